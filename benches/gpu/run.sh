#!/bin/bash
# The GPU session script behind README "Backends and benchmarks" (CUDA), sized for one call of a
# short lease (LIMIT seconds in all). Phases:
#   1. MTT matching-iteration benchmark (MNIST shape, IPC 10, w128, syn_steps 10 / 20 / 30) on
#      `cuda-unfused`, every iteration's time printed; it compiles most of MTT's kernels, alone,
#      since processes compiling side by side starved each other (second session);
#   2. CIFAR-10 subset experts (ConvNet-3 w128, 20 epochs), unwhitened (SelMatch) and ZCA (MTT);
#   3. cifar10-mtt-ipc10.toml (MTT vs random, IPC 10) and cifar10-selmatch-ipc40.toml (SelMatch
#      vs MTT vs random, IPC 40) side by side on `cuda-unfused`, each method stopped by a time
#      budget (max_seconds) sized to what is left;
#   4. results (no expert weights) packed into $OUT/results.tgz, whatever happened.
# Every process runs in one folder (device-bin/work) whose cubecl.toml keeps a compiled-kernel cache,
# so each phase reuses the kernels of the ones before.
# Layout, in the ignored device-bin/ of the repository: distillery and mtt-bench built with
# --features cuda (xz-compressed) and data/ (the CIFAR-10 subset, xz). Scenarios are taken from
# scenarios/ with their data paths rewritten. From the repository root:
#   LIMIT=570 bash benches/gpu/run.sh        DRY=1 bash benches/gpu/run.sh (a CPU rehearsal)
set -u
G=$PWD/device-bin
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LIMIT=${LIMIT:-570}
T0=$(date +%s)
now() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(now)s] $*" | tee -a "$OUT/timeline.txt"; }
left() { echo $(( LIMIT - $(now) )); }
R=$G/results; W=$G/work; mkdir -p "$R" "$W"
pack() {
  say "packing"
  kill $(jobs -p) 2>/dev/null
  for f in compile autotune; do [ -f "$W/$f.log" ] && gzip -c "$W/$f.log" > "$R/$f.log.gz"; done
  tar czf "$OUT/results.tgz" --exclude='experts' --exclude='*.safetensors' -C "$G" results 2>/dev/null
  ls -la "$OUT"
}
trap pack EXIT

V=cuda-unfused
if [ -z "${DRY:-}" ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  LD=""
  for d in /usr/local/cuda-13.0/targets/x86_64-linux/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64; do [ -d $d ] && LD=$LD:$d; done
  export LD_LIBRARY_PATH=${LD#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  for f in "$G"/*.xz "$G"/data/*.xz; do
    [ -f "$f" ] && python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3],'wb'))" "$f" && rm "$f"
  done
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 > "$OUT/gpu.csv" 2>/dev/null &
else
  V=cpu
  sleep 100000 &   # stands in for the GPU monitor: waits below must name their jobs
fi
chmod +x "$G/distillery" "$G/mtt-bench"
D=$G/distillery
export RUST_BACKTRACE=1

# Scenarios from the repository, data paths pointing at device-bin/data.
for s in cifar10-experts cifar10-mtt-ipc10 cifar10-selmatch-ipc40; do
  sed -e "s#\.\./\.\./shared/data/cifar10-subset#$G/data#" -e 's/^log_every = .*/log_every = 1/' \
    -e 's/^count = .*/count = 6/' scenarios/$s.toml > "$G/$s.toml"
done
sed -e 's/^name = "cifar10-experts"/name = "cifar10-zca-experts"/' -e 's#^\(test_files = .*\)#\1\nzca = true#' \
  "$G/cifar10-experts.toml" > "$G/cifar10-zca-experts.toml"
sed -i -e 's/^epochs = 300/epochs = 1000/' "$G/cifar10-mtt-ipc10.toml"             # the reference's evaluation
sed -i -e 's/^repeats = 5/repeats = 3/' "$G/cifar10-selmatch-ipc40.toml"
BENCH="--iters 3"; BT=240; ET=150
if [ -n "${DRY:-}" ]; then
  sed -i -e 's/^width = 128/width = 8/' -e 's/^epochs = 20/epochs = 3/' \
    -e 's/^max_start_epoch = 18/max_start_epoch = 1/' -e 's/^syn_steps = 30/syn_steps = 2/' -e 's/^epochs = [0-9]*00$/epochs = 3/' \
    -e 's/^count = 6/count = 2/' -e 's/^window_epochs = 200/window_epochs = 2/' -e 's/^difficulty_epochs = 10/difficulty_epochs = 1/' "$G"/*.toml
  BENCH="--iters 1 --width 8"; BT=50; ET=100
fi
grep -H "^count\|^zca\|^epochs\|^beta_grid\|^repeats\|^max_seconds" "$G"/*.toml

cat > "$W/cubecl.toml" <<T
[compilation]
cache = "local"
[compilation.logger]
level = "basic"
file = "$W/compile.log"
[autotune]
level = "minimal"
[autotune.logger]
level = "minimal"
file = "$W/autotune.log"
T
cd "$W"

say "phase 1: MTT benchmark on $V"
timeout $BT bash -c "for st in 10 20 30; do MTT_BENCH_EACH=1 '$G/mtt-bench' --one \$st --device $V $BENCH 2>&1 | grep -v '^$'; done" > "$OUT/bench.txt"
cat "$OUT/bench.txt"
say "phase 2: two sets of CIFAR-10 experts, side by side"
( timeout $ET "$D" run -q --device $V --results "$R" "$G/cifar10-experts.toml" > "$OUT/experts.txt" 2>&1 ) &
P1=$!
( timeout $ET "$D" run -q --device $V --results "$R" "$G/cifar10-zca-experts.toml" > "$OUT/zca-experts.txt" 2>&1 ) &
P2=$!
wait $P1 $P2
say "experts:"; tail -n 3 "$OUT/experts.txt" "$OUT/zca-experts.txt"
np=$(ls "$R"/experts/cifar10-convnet*/expert_*.safetensors 2>/dev/null | wc -l)
nz=$(ls "$R"/experts/cifar10-zca*/expert_*.safetensors 2>/dev/null | wc -l)
say "experts finished: $np unwhitened, $nz whitened"

[ "$np" -ge 1 ] && sed -i "s/^count = .*/count = $np/" "$G/cifar10-selmatch-ipc40.toml"
[ "$nz" -ge 1 ] && sed -i "s/^count = .*/count = $nz/" "$G/cifar10-mtt-ipc10.toml"
rem=$(left)
ma=$(( rem - 100 )); [ $ma -lt 20 ] && ma=20
mb=$(( (rem - 260) / 2 )); [ $mb -lt 30 ] && mb=30
say "left ${rem}s: MTT IPC 10 budget ${ma}s; SelMatch and MTT IPC 40 budgets ${mb}s each"
sed -i "s/^max_seconds = .*/max_seconds = $ma.0/" "$G/cifar10-mtt-ipc10.toml"
sed -i "s/^max_seconds = .*/max_seconds = $mb.0/" "$G/cifar10-selmatch-ipc40.toml"
stop=$(( $(left) - 15 ))
( [ "$nz" -ge 1 ] && timeout $stop "$D" run -q --device $V --results "$R" "$G/cifar10-mtt-ipc10.toml" > "$OUT/mtt-ipc10.txt" 2>&1; echo "rc $?" >> "$OUT/mtt-ipc10.txt" ) &
P1=$!
( [ "$np" -ge 1 ] && timeout $stop "$D" run -q --device $V --results "$R" "$G/cifar10-selmatch-ipc40.toml" > "$OUT/selmatch-ipc40.txt" 2>&1; echo "rc $?" >> "$OUT/selmatch-ipc40.txt" ) &
P2=$!
wait $P1 $P2
say "MTT IPC 10:"; tail -n 8 "$OUT/mtt-ipc10.txt"
say "SelMatch IPC 40:"; tail -n 12 "$OUT/selmatch-ipc40.txt"
for f in "$R"/cifar10-*/metrics.csv; do echo "$f: $(grep -c '^distill' "$f") distill rows"; grep '^distill' "$f" | head -n 3; grep '^distill' "$f" | tail -n 2; done
say "done"
