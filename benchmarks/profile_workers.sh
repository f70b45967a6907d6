#!/usr/bin/env bash
# Where each worker's CPU goes under closed-loop load on one route: py-spy (raw collapsed stacks, 10 s at
# 200 Hz) of every BentoML worker, their CPU seconds over the load, and the client's rate and latency.
# One server at a time: ClassicML alone, then the whole Bento (the gateway), on the same machine.
#
#   OUT=/some/dir PYSPY=py-spy bash benchmarks/profile_workers.sh [MODEL] [CONCURRENCY] [SECONDS]
#
# Defaults: text (/classify_text), 8 clients, 20 s (the gateway's weakest cell on the GPU, benchmarks/results/README.md).
# Needs the classic models and the tiny LLM in the model store (`python3 -m models.ensure`). Writes
# $OUT/<target>.<pid>.raw, .procs, .cpu0/.cpu1 (utime+stime ticks per process), .load.txt.
set -u
MODEL=${1:-text} CONC=${2:-8} SECONDS_=${3:-20}
OUT=${OUT:?set OUT} PYSPY=${PYSPY:-py-spy}
mkdir -p "$OUT"
ready() { for _ in $(seq 240); do curl -sf "localhost:$1/readyz" >/dev/null && return 0; sleep 1; done; return 1; }
ticks() { for pid in $(awk '{print $1}' "$1"); do echo "$pid $(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null)"; done; }
batch_rows() {
  curl -s "localhost:$1/metrics" | awk '/^infstack_classic_batch_size_count/{c+=$2} /^infstack_classic_batch_size_sum/{s+=$2} END{print s+0, c+0}'
}
profile() {  # name port target
  local name=$1 port=$2
  bentoml serve "$3" --port "$port" > "$OUT/$name.serve.log" 2>&1 &
  ready "$port" || { echo "$name did not start"; tail -20 "$OUT/$name.serve.log"; return; }
  python3 -m benchmarks.classic_load "http://127.0.0.1:$port" "$MODEL" "$CONC" 5 > /dev/null  # warm-up
  ps -eo pid,args | grep -E "_bentoml_impl.worker|vllm|EngineCore" | grep -v grep > "$OUT/$name.procs"
  read -r rows0 batches0 < <(batch_rows "$port")
  python3 -m benchmarks.classic_load "http://127.0.0.1:$port" "$MODEL" "$CONC" "$SECONDS_" > "$OUT/$name.load.txt" 2>&1 &
  local load=$!
  sleep 4
  for pid in $(grep "_bentoml_impl.worker" "$OUT/$name.procs" | awk '{print $1}'); do
    "$PYSPY" record --nonblocking -d 10 -r 200 -p "$pid" -f raw -o "$OUT/$name.$pid.raw" > /dev/null 2>&1 &
  done
  ticks "$OUT/$name.procs" > "$OUT/$name.cpu0"
  wait "$load"
  ticks "$OUT/$name.procs" > "$OUT/$name.cpu1"
  read -r rows1 batches1 < <(batch_rows "$port")
  echo "classic batches $((batches1 - batches0)), rows $((rows1 - rows0))" >> "$OUT/$name.load.txt"
  sleep 2; echo "== $name"; cat "$OUT/$name.load.txt"
  pkill -f circusd; pkill -f _bentoml_impl; sleep 3; pkill -9 -f "_bentoml_impl|EngineCore|vllm.entrypoints"; sleep 2
}
profile classic 3001 services.classic.service:ClassicML
profile gateway 3000 services.gateway.service:Gateway
