#!/bin/bash
# usage: scenarios/why/tools/run.sh NAME...  (from the repository root; the binary is $DISTILLERY,
# default ./bin-distillery)
# Runs scenarios/why/NAME.toml under nice, copies the run's checkpoint (which holds the final
# memories while the privacy audit runs) to results/mem/NAME.msgpack, and prints ACC, forgetting,
# the memory-fill seconds, the audit's test accuracy of a net trained on the memory alone, its
# median nearest-real distance and the wall seconds.
set -u
mkdir -p results/mem results/logs
for n in "$@"; do
  t0=$(date +%s.%N)
  nice -n 10 ${DISTILLERY:-./bin-distillery} run scenarios/why/$n.toml --results results --quiet > results/logs/$n.log 2>&1 &
  pid=$!
  while kill -0 $pid 2>/dev/null; do
    for ck in results/why-$n-*/checkpoint.msgpack; do
      [ -f "$ck" ] && cp "$ck" results/mem/$n.msgpack.tmp 2>/dev/null && mv results/mem/$n.msgpack.tmp results/mem/$n.msgpack
    done
    sleep 0.3
  done
  wait $pid; rc=$?
  t1=$(date +%s.%N)
  dir=$(ls -dt results/why-$n-* | head -1)
  python3 - "$dir" "$n" "$rc" "$(echo "$t1 - $t0" | bc)" <<'PY'
import json, sys, csv
d, n, rc, wall = sys.argv[1:]
s = json.load(open(d + '/summary.json'))
priv = {r['set']: r for r in csv.DictReader(open(d + '/privacy.csv'))}
for k, v in s['strategies'].items():
    p = priv.get(k, {})
    print(f"{n:>14} {k:>7} ACC {v['average_accuracy']:.4f} F {v['forgetting']:.4f} fill {v['memory_fill_seconds']:6.1f}s "
          f"alone {float(p.get('test_acc', 'nan')):.3f} nn {float(p.get('pixel_median', 'nan')):6.2f} wall {float(wall):.0f}s rc {rc} {d}")
PY
done
