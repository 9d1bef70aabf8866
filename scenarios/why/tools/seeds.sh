#!/bin/bash
# usage: scenarios/why/tools/seeds.sh SEEDS NAME...  e.g. seeds.sh "1 2 3 4" base lr3 lr10
# Runs scenarios/why/NAME.toml at each seed (--seed N) and prints every strategy's ACC and
# forgetting, the seconds filling the memory and the wall seconds.
set -u
seeds=$1; shift
mkdir -p results/logs
for n in "$@"; do for s in $seeds; do
  t0=$(date +%s.%N)
  nice -n 10 ${DISTILLERY:-./bin-distillery} run scenarios/why/$n.toml --seed $s --results results --quiet > results/logs/$n-s$s.log 2>&1; rc=$?
  t1=$(date +%s.%N)
  dir=$(ls -dt results/why-$n-* | head -1)
  python3 - "$dir" "$n" "$s" "$rc" "$(echo "$t1 - $t0" | bc)" <<'PY'
import json, sys
d, n, seed, rc, wall = sys.argv[1:]
s = json.load(open(d + '/summary.json'))
for k, v in s['strategies'].items():
    print(f"{n:>10} seed {seed} {k:>7} ACC {v['average_accuracy']:.4f} F {v['forgetting']:.4f} fill {v['memory_fill_seconds']:6.1f}s wall {float(wall):.0f}s rc {rc} {d}")
PY
done; done
