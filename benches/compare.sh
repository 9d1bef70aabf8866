#!/usr/bin/env bash
# Ours against PyTorch on the same work, in one sitting: for each row, our cargo bench and then
# the PyTorch script of benches/reference/, back to back, each `--repeat` times (alternating), and
# a table of the medians with ratios (ours / PyTorch: below 1 means we are faster).
#
#   benches/compare.sh            # ConvNet step, DM iteration, MTT iteration (syn_steps 20, IPC 10, w32)
#   benches/compare.sh --full     # also MTT at syn_steps 10 and 30, and at IPC 1
#   benches/compare.sh --repeat 3 # three alternating rounds per row, medians over rounds
#
# PyTorch comes from a virtual environment (DISTILLERY_TORCH_VENV, default target/torch-venv),
# created with `pip install torch numpy` when missing. Both sides use THREADS threads (default 2):
# RAYON_NUM_THREADS and DISTILLERY_THREADS for ours, torch.set_num_threads for theirs.
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
repeat=1
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=1 ;;
    --repeat) repeat="$2"; shift ;;
    *) echo "unknown option $1 (--full, --repeat N)" >&2; exit 2 ;;
  esac
  shift
done
venv=${DISTILLERY_TORCH_VENV:-target/torch-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "creating $venv with torch and numpy (once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch numpy
fi
py="$(cd "$(dirname "$venv/bin/python")" && pwd)/python"
threads=${THREADS:-2}
export RAYON_NUM_THREADS=$threads DISTILLERY_THREADS=$threads
cargo build --release --benches --quiet 2>/dev/null || cargo build --release --benches
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The median figure ("median 123 ms" or "median 1.23 s", in seconds) and peak RSS (MiB, or "-").
secs() { sed -n 's/.*median \([0-9.]*\) \(ms\|s\).*/\1 \2/p' | tail -1 | awk '{ print ($2 == "ms") ? $1 / 1000 : $1 }'; }
rss() { sed -n 's/.*peak RSS \([0-9]*\) MiB.*/\1/p' | tail -1; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rows=()
row() { # name, our command, their command
  local name="$1" ours="$2" theirs="$3" ot=() tt=() om=() tm=()
  for _ in $(seq "$repeat"); do
    eval "$ours" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    grep -h "median" "$log" >&2
    ot+=("$(secs <"$log")"); om+=("$(rss <"$log")")
    (cd benches/reference && eval "$theirs") >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    grep -h "median" "$log" >&2
    tt+=("$(secs <"$log")"); tm+=("$(rss <"$log")")
  done
  local o t a b
  o=$(printf '%s\n' "${ot[@]}" | median); t=$(printf '%s\n' "${tt[@]}" | median)
  a=$(printf '%s\n' "${om[@]}" | grep . | median || true); b=$(printf '%s\n' "${tm[@]}" | grep . | median || true)
  rows+=("$(awk -v n="$name" -v o="$o" -v t="$t" -v a="$a" -v b="$b" 'BEGIN {
    mem = (a != "" && a != "nan" && b != "" && b != "nan") ? sprintf("%d / %d MiB (%.2f)", a, b, a / b) : "-";
    printf "| %s | %.3f s | %.3f s | %.2f | %s |", n, o, t, o / t, mem }')")
}

row "ConvNet-3 w128 step, batch 256" \
  "cargo bench --quiet --bench convnet -- --iters 7" \
  "'$py' convnet_bench.py --iters 7 --threads $threads"
row "DM iteration, IPC 10, batch_real 256, w128" \
  "cargo bench --quiet --bench dm -- --iters 3" \
  "'$py' dm_bench.py --iters 3 --threads $threads"
mtt_settings="20:10"
[ "$full" = 1 ] && mtt_settings="10:10 20:10 30:10 10:1 20:1 30:1"
for s in $mtt_settings; do
  steps=${s%%:*} ipc=${s##*:}
  row "MTT iteration, syn_steps $steps, IPC $ipc, w32" \
    "cargo bench --quiet --bench mtt -- --width 32 --iters 2 --steps $steps --ipc $ipc" \
    "'$py' mtt_bench.py --width 32 --iters 2 --steps $steps --ipc $ipc --threads $threads"
done

echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD), $threads threads, load average $(cut -d' ' -f1-3 /proc/loadavg), $("$py" -c 'import torch; print("torch", torch.__version__)')"
echo
echo "| work | distillery | PyTorch | ratio | peak RSS ours / PyTorch (ratio) |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
