#!/usr/bin/env bash
# Load benchmark of the gRPC transport (not a test): one `distillery serve` and four
# `distillery client --ids` processes of 250 clients each (1,000 clients) run two rounds of
# fedavg and one of distilled_oneshot on tiny synthetic data (10,000 8x8 images, 10 per client,
# a width-8 ConvNet). Prints each round's seconds (from the server's metrics.csv) and the peak
# resident memory (VmHWM) of the server and of the largest client process.
#
#   benches/load.sh [CLIENTS_PER_PROCESS] [PROCESSES]     # defaults 250 4
#   benches/load.sh CLIENTS 0                             # the in-process simulator instead
#   STRATEGIES='"fedavg"' benches/load.sh 25000 4          # only fedavg (100,000 clients)
#
# With 0 processes, `distillery run` simulates all CLIENTS in one process (tokio tasks, their work
# on a pool of one worker per core) and the "server" figure is that process's.
# Needs a release build (cargo build --release); runs everything on loopback under `nice`.
set -euo pipefail
per=${1:-250}
procs=${2:-4}
clients=$((procs == 0 ? per : per * procs))
strategies=${STRATEGIES:-'"fedavg", "distilled_oneshot"'}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/distillery
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/load.toml" <<EOF
name = "load"
kind = "federated"
seed = 1
[data]
source = "synthetic"
train = $((clients * 10))
test = 500
channels = 1
size = 8
classes = 10
[model]
width = 8
depth = 2
[train]
epochs = 1
batch_size = 10
lr = 0.02
[eval]
epochs = 5
[distill]
method = "random"
ipc = 1
[federated]
clients = $clients
partition = { kind = "iid" }
strategies = [$strategies]
rounds = 2
fedavg_until_oneshot = false
[audit]
# The per-client privacy audit trains networks per client after the rounds; this bench times
# the transport.
enabled = false
EOF
"$bin" check "$work/load.toml" >/dev/null

# Peak resident memory of pid $1, polled until it exits, written to $2.
watch_hwm() {
    local pid=$1 out=$2 hwm=0 v
    while kill -0 "$pid" 2>/dev/null; do
        v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [ -n "$v" ] && hwm=$v
        sleep 0.2
    done
    echo "$hwm" >"$out"
}

t0=$(date +%s.%N)
if [ "$procs" -eq 0 ]; then
    nice "$bin" run "$work/load.toml" --quiet --results "$work/results" \
        >"$work/server.out" 2>"$work/server.err" &
    server=$!
    watch_hwm "$server" "$work/server.hwm" &
    watchers=($!)
    wait "$server" || { echo "the run failed:" >&2; tail -5 "$work/server.err" >&2; exit 1; }
    wait "${watchers[@]}"
else
nice "$bin" serve "$work/load.toml" --quiet --addr "127.0.0.1:$port" --results "$work/results" \
    >"$work/server.out" 2>"$work/server.err" &
server=$!
watch_hwm "$server" "$work/server.hwm" &
watchers=($!)
pids=()
for p in $(seq 0 $((procs - 1))); do
    nice "$bin" client "$work/load.toml" --server "http://127.0.0.1:$port" \
        --ids "$((p * per))-$(((p + 1) * per - 1))" --workers 1 --results "$work/cache" \
        >"$work/client$p.out" 2>"$work/client$p.err" &
    pids+=($!)
    watch_hwm "$!" "$work/client$p.hwm" &
    watchers+=($!)
done
# Any client process that fails ends the bench at once (waiting in order would hide it).
while [ "${#pids[@]}" -gt 0 ]; do
    if wait -n -p done "${pids[@]}"; then
        left=()
        for q in "${pids[@]}"; do [ "$q" = "$done" ] || left+=("$q"); done
        pids=("${left[@]}")
    else
        echo "a client process failed:" >&2; tail -n 5 "$work"/client*.err >&2; exit 1
    fi
done
wait "$server" || { echo "server failed:" >&2; tail -5 "$work/server.err" >&2; exit 1; }
wait "${watchers[@]}"
fi
t1=$(date +%s.%N)
run=$(ls -d "$work"/results/load-*)
if [ "$procs" -eq 0 ]; then
    echo "load: $clients clients simulated in one process; $(nproc) cores"
else
    echo "load: 1 server, $procs client processes x $per clients = $clients clients; $(nproc) cores"
fi
echo "wall time (start to finish, with data generation and connecting): $(echo "$t1 - $t0" | bc) s"
# metrics.csv: strategy,task,round,test_acc,...,selected,accepted,elapsed_s (seconds since the
# strategy started): a round's time is the difference of consecutive rows.
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { s = $col["strategy"]; e = $col["elapsed_s"]; prev = (s in last) ? last[s] : 0
      printf "%-18s round %d: %7.2f s  accepted %s of %s  test_acc %s\n", s, $col["round"], e - prev,
          $col["accepted"], $col["selected"], $col["test_acc"]; last[s] = e }' "$run/metrics.csv"
echo "server peak RSS (VmHWM): $(($(cat "$work/server.hwm") / 1024)) MiB"
max=0
for p in $(seq 0 $((procs - 1))); do
    v=$(cat "$work/client$p.hwm"); [ "$v" -gt "$max" ] && max=$v
done
[ "$procs" -eq 0 ] || echo "largest client process peak RSS (VmHWM): $((max / 1024)) MiB"
