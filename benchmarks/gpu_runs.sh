#!/usr/bin/env bash
# The GPU runs behind benchmarks/results/*_gpu_h200*.json, one step per argument, on a machine where
# the project's packages and vLLM 0.26 import in `python3` (the H200 image plus the staged wheels):
#
#   OUT=/some/dir bash benchmarks/gpu_runs.sh zipf classic embedding gputests
#
# Issue 16's steps (classic, embedding) need no vLLM: bentoml, LitServe, xgboost and the packaged MiniLM in
# python3, infinity-emb in its own prefix ($INFINITY_PYTHON); `models` trains the classic models there.
# The GPU image's jax is built for numpy 2: infinity's prefix (numpy 1.26, transformers 4.57,
# sentence-transformers 3.4.1) imports only with USE_FLAX=0 USE_JAX=0 USE_TF=0 set by $INFINITY_PYTHON, e.g.
#   printf '#!/bin/sh\nUSE_FLAX=0 USE_JAX=0 USE_TF=0 PYTHONPATH=/tmp/infsite exec python3 "$@"\n' > /tmp/infpy
#
# Each step writes its JSON + PNG under $OUT (default benchmarks/results). LitServe runs from the same
# python; infinity-emb from $INFINITY_PYTHON (its own site: it pins sentence-transformers < 4).
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
status=0
for step in "$@"; do
  echo "=== $step $(date +%T)"
  case $step in
    zipf)  # issue 15: repeated prompts through the Bento vs raw vLLM; the same clients from 1 and 4 processes
      python3 -m benchmarks.llm_serving --preset llama-3.1-8b --set max_model_len=4096 --targets raw,gateway \
        --client ours --zipf-distinct 120 --input-len 400 --output-len 128 --request-rates '' --concurrency 64 \
        --client-processes 1,4 --concurrency-prompts 600 --quiet-wait-s 1 \
        --out "$OUT/llm_zipf_gpu_h200_client_processes.json" ;;
    classic)  # issue 16: classic models vs LitServe (MiniLM on cuda) and both no-op ceilings, GPU-host defaults (2
      # classic workers, text 2 batches in flight, the embedding batcher's second batch only when a full one
      # waits) beside dispatch_when_idle on
      python3 -m benchmarks classic_batching --litserve-python python3 --duration 5 --attempts 1 \
        --sweep-tabular-ms --sweep-text-ms --env INFSTACK_EMBEDDING__DEVICE=cuda \
        --variant dispatch_idle:INFSTACK_CLASSIC__DISPATCH_WHEN_IDLE=true \
        --name classic_vs_litserve_gpu_h200_dec02_lean
      cp benchmarks/results/classic_vs_litserve_gpu_h200_dec02_lean.* "$OUT"/ 2>/dev/null ;;
    embedding)  # issue 16: embedding misses vs infinity-emb, both on cuda; the defaults (a second batch in flight
      # only when a full one waits) beside one batch in flight
      python3 -m benchmarks embedding_peers --infinity-python "${INFINITY_PYTHON:?set INFINITY_PYTHON}" \
        --device cuda --seconds 8 --rounds 1 --quiet-wait-s 3 \
        --variant in_flight_1:INFSTACK_EMBEDDING__BATCHES_IN_FLIGHT=1 \
        --variant gil_0.5ms:INFSTACK_EMBEDDING__GIL_SWITCH_INTERVAL_MS=0.5 \
        --out "$OUT/embedding_vs_infinity_gpu_h200_dec02_final.json" ;;
    classic_text)  # issue 16: ours only (no LitServe), both models at c=1/8, the embedding worker's GIL switch interval
      python3 -m benchmarks classic_batching --duration 5 --attempts 1 --concurrency 1 8 \
        --sweep-tabular-ms --sweep-text-ms --env INFSTACK_EMBEDDING__DEVICE=cuda \
        --variant gil_0.5ms:INFSTACK_EMBEDDING__GIL_SWITCH_INTERVAL_MS=0.5 \
        --name classic_gil_switch_gpu_h200_dec02
      cp benchmarks/results/classic_gil_switch_gpu_h200_dec02.* "$OUT"/ 2>/dev/null ;;
    models)
      python3 -m models.train_classic ;;
    gputests)
      python3 -m pytest tests/gpu -m gpu -p no:cacheprovider -q 2>&1 | tail -30 ;;
    *) echo "unknown step $step"; status=2 ;;
  esac
  rc=$?; [ $rc -ne 0 ] && status=$rc
done
exit $status
