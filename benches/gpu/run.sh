#!/bin/bash
# The GPU session script behind README "Backends and benchmarks" (CUDA): smoke test, MTT benchmark,
# CIFAR-10 subset experts + MTT IPC 10 + SelMatch IPC 40, each time-boxed to fit a short lease.
# Layout it expects, in an ignored folder device-bin/ of the repository: distillery and mtt-bench
# (built with --features cuda, xz-compressed), the scenario copies (paths to data/), smoke.toml
# (quickstart with device = "cuda") and data/ (the CIFAR-10 subset, xz). Runs from the repository
# root: LIMIT=555 bash device-bin/run.sh; DRY=1 rehearses it on a CPU with tiny settings.
set -u
G=device-bin
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LIMIT=${LIMIT:-560}          # seconds this script may use in all
T0=$(date +%s)
now() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(now)s] $*"; }
left() { echo $(( LIMIT - $(now) )); }
pack() {
  say "packing"
  cp /tmp/cubecl-*.log $G/results/ 2>/dev/null; gzip -f $G/results/cubecl-*.log 2>/dev/null
  tar czf "$OUT/results.tgz" --exclude='experts' --exclude='*.safetensors' -C $G results 2>/dev/null
  ls -la "$OUT"
}
trap pack EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
LD=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64; do [ -d $d ] && LD=$LD:$d; done
for f in $(find /usr /opt -name 'libnvrtc.so*' 2>/dev/null | head -8); do echo "nvrtc: $f"; LD=$LD:$(dirname $f); done
export LD_LIBRARY_PATH=${LD#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ ! -f /usr/local/cuda/include/cuda_fp16.h ]; then
  H=$(find /usr /opt -name cuda_fp16.h 2>/dev/null | head -1); echo "cuda_fp16.h: $H"
  [ -n "$H" ] && export CUDA_PATH=$(dirname $(dirname $H))
fi
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH CUDA_PATH=${CUDA_PATH:-}"
for f in $G/*.xz $G/data/*.xz; do
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3],'wb'))" $f && rm $f
done
chmod +x $G/distillery $G/mtt-bench
ls -la $G $G/data
export RUST_BACKTRACE=1
D=$G/distillery
BENCH="--device cuda --iters 4"; STEPS="10 20 30"
if [ -n "${DRY:-}" ]; then   # a rehearsal on a CPU machine with tiny settings
  sed -i -e 's/^device = "cuda"/device = "cpu"/' -e 's/^width = 128/width = 8/' -e 's/^epochs = 20/epochs = 3/' \
    -e 's/^max_start_epoch = 18/max_start_epoch = 1/' -e 's/^syn_steps = 30/syn_steps = 2/' -e 's/^epochs = 300/epochs = 3/' \
    -e 's/^repeats = 5/repeats = 1/' -e 's/^window_epochs = 200/window_epochs = 2/' -e 's/^difficulty_epochs = 10/difficulty_epochs = 1/' $G/*.toml
  BENCH="--device cpu --iters 1 --width 8"; STEPS="2 3"
fi
R="--results $G/results"

cat > cubecl.toml <<'T'
[compilation]
cache = "local"
[compilation.logger]
level = "basic"
file = "/tmp/cubecl-compile.log"
[autotune]
level = "minimal"
[autotune.logger]
level = "minimal"
file = "/tmp/cubecl-autotune.log"
T
say "smoke: quickstart on cuda"
$D run $R $G/smoke.toml > $OUT/smoke.log 2>&1 &
SP=$!
for i in $(seq 1 48); do
  sleep 5
  kill -0 $SP 2>/dev/null || break
  u=$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)
  c=$(ps -o %cpu=,rss=,nlwp= -p $SP)
  say "smoke running: compile log $(wc -l < /tmp/cubecl-compile.log 2>/dev/null) lines, autotune log $(wc -l < /tmp/cubecl-autotune.log 2>/dev/null) lines; gpu $u; cpu/rss/threads $c"
  if [ $i -eq 9 ] || [ $i -eq 30 ]; then
    timeout 40 /usr/local/cuda/bin/cuda-gdb -p $SP -batch -ex "thread apply all bt 15" > $OUT/stacks_$i.txt 2>&1
    echo "stacks: $(grep -c '^Thread' $OUT/stacks_$i.txt) threads"
  fi
done
if kill -0 $SP 2>/dev/null; then
  say "SMOKE STILL RUNNING after 240 s"; kill $SP
  tr '\r' '\n' < $OUT/smoke.log | tail -c 2000; tail -5 /tmp/cubecl-compile.log; tail -5 /tmp/cubecl-autotune.log; exit 1
fi
wait $SP; rc=$?
tr '\r' '\n' < $OUT/smoke.log | grep -v "^\s*$" | tail -6
say "compile log $(wc -l < /tmp/cubecl-compile.log 2>/dev/null) lines, autotune log $(wc -l < /tmp/cubecl-autotune.log 2>/dev/null) lines"
[ $rc -eq 0 ] || { say "SMOKE FAILED rc $rc"; tail -5 /tmp/cubecl-compile.log; exit 1; }

say "bench: one MTT iteration, MNIST shape, IPC 10, w128, syn_steps 10/20/30"
for st in $STEPS; do
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > $OUT/gpumem_$st.txt 2>/dev/null &
  P=$!
  timeout 60 $G/mtt-bench --one $st $BENCH 2>&1 | grep -v "^$" | tail -3
  kill $P 2>/dev/null
  echo "  syn_steps $st: peak GPU memory in use $(sort -n $OUT/gpumem_$st.txt | tail -1) MiB (whole device, sampled every 0.2 s)"
done
rm -f $OUT/gpumem_*.txt

say "experts: 2 first, timed"
ts=$(now)
sed -i 's/^count = .*/count = 2/' $G/cifar10-*.toml
timeout 120 $D run -q $R $G/cifar10-experts.toml 2>&1 | tail -5
t2=$(( $(now) - ts + 1 ))
extra=$(( 2 * 70 / t2 )); [ $extra -gt 8 ] && extra=8
n=$(( 2 + extra ))
say "2 experts took ${t2}s; training up to $n"
sed -i "s/^count = .*/count = $n/" $G/cifar10-*.toml
[ $extra -gt 0 ] && timeout $(( 60 * 3 )) $D run -q $R $G/cifar10-experts.toml 2>&1 | tail -5
du -sh $G/results/experts/*
ls $G/results/experts/*/expert_0002.safetensors >/dev/null 2>&1 || { say "NO EXPERTS: stopping"; exit 1; }

rem=$(left)
ma=$(( rem - 120 )); [ $ma -lt 20 ] && ma=20
mb=$(( (rem - 200) / 2 )); [ $mb -lt 15 ] && mb=15
say "left ${rem}s: MTT IPC 10 budget ${ma}s; SelMatch / MTT IPC 40 budget ${mb}s each (running side by side)"
sed -i "s/^max_seconds = .*/max_seconds = $ma.0/" $G/cifar10-mtt-ipc10.toml
sed -i "s/^max_seconds = .*/max_seconds = $mb.0/" $G/cifar10-selmatch-ipc40.toml
stop=$(( $(left) - 8 ))
( timeout $stop $D run $R $G/cifar10-mtt-ipc10.toml > $G/results/a.log 2>&1; echo "A rc $?" >> $G/results/a.log ) &
( timeout $stop $D run $R $G/cifar10-selmatch-ipc40.toml > $G/results/b.log 2>&1; echo "B rc $?" >> $G/results/b.log ) &
wait
say "A:"; grep -v "^\s*$" $G/results/a.log | tr '\r' '\n' | grep -v "━\|█\|░" | tail -15
say "B:"; grep -v "^\s*$" $G/results/b.log | tr '\r' '\n' | grep -v "━\|█\|░" | tail -25
for f in $G/results/*/summary.json; do echo "$f"; python3 -c "import json,sys; s=json.load(open('$f')); print(json.dumps({k:s.get(k) for k in ['distilled','distill_seconds','seconds_per_iteration','selection_seconds','experts_seconds','wall_seconds','syn_lr','coverage']}))"; done
say "done"
