#!/bin/bash
# The GPU session script behind README "Backends and benchmarks" (CUDA), sized for one call of a
# short lease (LIMIT seconds in all). Two sessions showed compiling kernels, not running them, is
# what a lease is spent on, so the CIFAR-10 MTT run (issue 4) comes first and runs alone:
#   0. `distillery doctor --device cuda-unfused` at the CIFAR run's shapes (DOCTOR_TIME seconds at
#      most): the device's convolution gradients, DSA, ConvNet backward and MTT step against the
#      CPU's (the third session's MTT on CUDA moved its images far off where the CPU's did not);
#      The MTT runs below use the hand-written backward's `matmul` convolution gradients when
#      the doctor finds the default `conv` ones wrong there and those right (and each run checks
#      its own first step against the CPU, `check_device`, switching forms itself if need be);
#   1. CIFAR-10 subset experts, ZCA-whitened (MTT's reference), ConvNet-3 w128, 20 epochs, on
#      `cuda-unfused`, stopped after ET seconds (finished experts are kept);
#   2. cifar10-mtt-ipc10.toml (MTT vs random, IPC 10) on the experts that finished, distillation
#      stopped by a time budget (max_seconds) that leaves EVAL seconds for the evaluations;
#   3. only with SELMATCH=1 and time left: unwhitened experts, then cifar10-selmatch-ipc40.toml;
#   4. only with BENCH=1: the MTT matching-iteration benchmark (MNIST shape, syn_steps 10/20/30);
#   5. results (no expert weights) packed into $OUT/results.tgz, whatever happened, and the
#      compiled-kernel and autotune caches into $OUT/kcache.tgz: copied to device-bin/kcache.tgz
#      and carried, a later session's lease starts with them (same GPU architecture: H100 and
#      H200 are both sm_90).
# Every process runs in one folder (device-bin/work) whose cubecl.toml keeps both caches there.
# Layout, in the ignored device-bin/ of the repository: distillery and mtt-bench built with
# --features cuda (xz-compressed), data/ (the CIFAR-10 subset, xz), kcache.tgz if a session left one.
# Scenarios are taken from scenarios/ with their data paths rewritten. From the repository root:
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
  tar czf "$OUT/kcache.tgz" -C "$W" kernels 2>/dev/null
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
[ -f "$G/kcache.tgz" ] && [ ! -d "$W/kernels" ] && tar xzf "$G/kcache.tgz" -C "$W" && say "kernel caches restored: $(du -sh "$W/kernels" | cut -f1)"

# Scenarios from the repository, data paths pointing at device-bin/data.
for s in cifar10-experts cifar10-mtt-ipc10 cifar10-selmatch-ipc40; do
  sed -e "s#\.\./\.\./shared/data/cifar10-subset#$G/data#" -e 's/^log_every = .*/log_every = 1/' \
    -e "s/^count = .*/count = ${EXPERTS:-3}/" -e 's/^device = .*//' scenarios/$s.toml > "$G/$s.toml"
done
sed -e 's/^name = "cifar10-experts"/name = "cifar10-zca-experts"/' -e 's#^\(test_files = .*\)#\1\nzca = true#' \
  "$G/cifar10-experts.toml" > "$G/cifar10-zca-experts.toml"
sed -i -e 's/^epochs = 300/epochs = 1000/' -e 's/^repeats = 5/repeats = 3/' "$G/cifar10-mtt-ipc10.toml"   # the reference's evaluation
sed -i -e 's/^repeats = 5/repeats = 3/' "$G/cifar10-selmatch-ipc40.toml"
BENCH_ARGS="--iters 3"; ET=${ET:-150}; EVAL=${EVAL:-170}
if [ -n "${DRY:-}" ]; then
  sed -i -e 's/^width = 128/width = 8/' -e 's/^epochs = 20/epochs = 3/' \
    -e 's/^max_start_epoch = 18/max_start_epoch = 1/' -e 's/^syn_steps = 30/syn_steps = 2/' -e 's/^epochs = [0-9]*00$/epochs = 3/' \
    -e 's/^count = [0-9]*/count = 2/' -e 's/^window_epochs = 200/window_epochs = 2/' -e 's/^difficulty_epochs = 10/difficulty_epochs = 1/' "$G"/*.toml
  BENCH_ARGS="--iters 1 --width 8"; ET=100; EVAL=30
fi
grep -H "^count\|^zca\|^epochs\|^beta_grid\|^repeats\|^max_seconds" "$G"/*.toml

cat > "$W/cubecl.toml" <<T
[compilation]
cache = { file = "$W/kernels" }
[compilation.logger]
level = "basic"
file = "$W/compile.log"
[autotune]
level = "minimal"
cache = { file = "$W/kernels" }
[autotune.logger]
level = "minimal"
file = "$W/autotune.log"
T
cd "$W"
kernels() { [ -f "$W/compile.log" ] && grep -c -i "compil" "$W/compile.log" || echo 0; }

say "phase 0: doctor on $V"
DARGS=""; [ -n "${DRY:-}" ] && DARGS="--width 8 --batch 6 --shape 3x8x8"
( timeout ${DOCTOR_TIME:-150} "$D" doctor --device $V $DARGS > "$OUT/doctor.txt" 2>&1; echo "rc $?" >> "$OUT/doctor.txt" ) &
wait $!
cat "$OUT/doctor.txt"
say "doctor done; compile-log lines $(kernels)"
[ -n "${DOCTOR_ONLY:-}" ] && exit 0
# The hand-written backward's convolution gradients: `conv` unless the doctor found them wrong on
# this device and the `matmul` form right (CONV_GRADS overrides).
bad() { grep -q "MTT step image grad, $1 \[.*cpu  <-- MISMATCH" "$OUT/doctor.txt"; }
CG=${CONV_GRADS:-conv}
if [ -z "${CONV_GRADS:-}" ] && bad "hand-written (conv)" && ! bad "hand-written (matmul)"; then CG=matmul; fi
say "MTT runs use conv_grads = $CG"
sed -i "s/^\[eval\]/conv_grads = \"$CG\"\n\n[eval]/" "$G/cifar10-mtt-ipc10.toml" "$G/cifar10-selmatch-ipc40.toml"

say "phase 1: ZCA CIFAR-10 experts on $V (at most ${ET}s)"
( timeout $ET "$D" run -q --device $V --results "$R" "$G/cifar10-zca-experts.toml" > "$OUT/zca-experts.txt" 2>&1 ) &
wait $!
tail -n 3 "$OUT/zca-experts.txt"
nz=$(ls "$R"/experts/cifar10-zca*/expert_*.safetensors 2>/dev/null | wc -l)
say "experts finished: $nz whitened; compile-log lines $(kernels)"

if [ "$nz" -ge 1 ]; then
  sed -i "s/^count = .*/count = $nz/" "$G/cifar10-mtt-ipc10.toml"
  ma=$(( $(left) - EVAL - 20 )); [ $ma -lt 20 ] && ma=20
  sed -i "s/^max_seconds = .*/max_seconds = $ma.0/" "$G/cifar10-mtt-ipc10.toml"
  say "phase 2: MTT IPC 10, distillation budget ${ma}s, then evaluation"
  ( timeout $(( $(left) - 10 )) "$D" run -q --device $V --results "$R" "$G/cifar10-mtt-ipc10.toml" > "$OUT/mtt-ipc10.txt" 2>&1; echo "rc $?" >> "$OUT/mtt-ipc10.txt" ) &
  wait $!
  tail -n 12 "$OUT/mtt-ipc10.txt"
  # The run's own first-step check against the CPU ([distill] check_device): the form it used.
  for f in "$R"/cifar10-mtt*/summary.json; do grep -A 12 '"device_check"' "$f"; done
  for f in "$R"/cifar10-mtt*/metrics.csv; do echo "$f: $(grep -c '^distill' "$f") distill rows"; grep '^distill' "$f" | head -n 4; grep '^distill' "$f" | tail -n 3; grep -v '^distill' "$f" | tail -n 8; done
  say "compile-log lines $(kernels)"
fi

if [ -n "${SELMATCH:-}" ] && [ "$(left)" -gt 200 ]; then
  say "phase 3: unwhitened experts, then SelMatch IPC 40"
  ( timeout $ET "$D" run -q --device $V --results "$R" "$G/cifar10-experts.toml" > "$OUT/experts.txt" 2>&1 ) &
  wait $!
  np=$(ls "$R"/experts/cifar10-convnet*/expert_*.safetensors 2>/dev/null | wc -l)
  if [ "$np" -ge 1 ]; then
    sed -i "s/^count = .*/count = $np/" "$G/cifar10-selmatch-ipc40.toml"
    mb=$(( ($(left) - EVAL) / 2 )); [ $mb -lt 20 ] && mb=20
    sed -i "s/^max_seconds = .*/max_seconds = $mb.0/" "$G/cifar10-selmatch-ipc40.toml"
    ( timeout $(( $(left) - 10 )) "$D" run -q --device $V --results "$R" "$G/cifar10-selmatch-ipc40.toml" > "$OUT/selmatch-ipc40.txt" 2>&1; echo "rc $?" >> "$OUT/selmatch-ipc40.txt" ) &
    wait $!
    tail -n 12 "$OUT/selmatch-ipc40.txt"
  fi
fi

if [ -n "${BENCH:-}" ] && [ "$(left)" -gt 60 ]; then
  say "phase 4: MTT benchmark on $V"
  timeout $(( $(left) - 10 )) bash -c "for st in 10 20 30; do MTT_BENCH_EACH=1 '$G/mtt-bench' --one \$st --device $V $BENCH_ARGS 2>&1 | grep -v '^$'; done" > "$OUT/bench.txt"
  cat "$OUT/bench.txt"
fi
say "done"
