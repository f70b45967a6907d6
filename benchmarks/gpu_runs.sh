#!/usr/bin/env bash
# The GPU runs behind benchmarks/results/*_gpu_h200*.json, one step per argument, on a machine where
# the project's packages and vLLM 0.26 import in `python3` (the H200 image plus the staged wheels):
#
#   OUT=/some/dir bash benchmarks/gpu_runs.sh zipf classic embedding gputests
#
# Issue 16's steps (classic, embedding): bentoml, LitServe, xgboost, the packaged MiniLM and vLLM (the gateway's
# tiny LLM) in python3, infinity-emb in its own prefix ($INFINITY_PYTHON); `models` trains the classic models and builds the tiny LLM there.
# The GPU image's jax is built for numpy 2: infinity's prefix (numpy 1.26, transformers 4.57,
# sentence-transformers 3.4.1, and scipy 1.17 / scikit-learn 1.9: the image's scipy needs numpy 2) imports only
# with USE_FLAX=0 USE_JAX=0 USE_TF=0 set by $INFINITY_PYTHON, e.g.
#   printf '#!/bin/sh\nUSE_FLAX=0 USE_JAX=0 USE_TF=0 PYTHONPATH=/tmp/infsite exec python3 "$@"\n' > /tmp/infpy
#
# Each step writes its JSON + PNG under $OUT (default benchmarks/results). LitServe runs from the same
# python; infinity-emb from $INFINITY_PYTHON (its own site: it pins sentence-transformers < 4).
set -uo pipefail
OUT=${OUT:-benchmarks/results}
TAG=${TAG:-$(LC_ALL=C date +%b%d | tr A-Z a-z)}  # the date in the classic and embedding result names, e.g. dec06
GPU=${GPU:-h200}  # the card in those names: h200, h100
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
      # waits), and the same routes at the whole Bento's public port: on one GPU the embedding model shares GPU 0
      # with the tiny LLM (cuda:0; the LLM is not what is measured here, so eager and a small memory share)
      python3 -m benchmarks classic_batching --litserve-python python3 --duration 5 --attempts 1 \
        --sweep-tabular-ms --sweep-text-ms --gateway --env INFSTACK_EMBEDDING__DEVICE=cuda:0 \
        --env INFSTACK_LLM__ENFORCE_EAGER=true --env INFSTACK_LLM__GPU_MEMORY_UTILIZATION=0.3 \
        --name "classic_vs_litserve_gpu_${GPU}_${TAG}_gateway"
      cp benchmarks/results/classic_vs_litserve_gpu_"${GPU}"_"${TAG}"_gateway.* "$OUT"/ 2>/dev/null ;;
    classic_ab)  # issue 16: our defaults beside variants, no peer, no gateway; both no-op ceilings; GPU-host
      # defaults as in `classic`. $VARIANTS: more classic_batching arguments, e.g. "--concurrency 8 64
      # --variant xgboost_only:INFSTACK_CLASSIC__TABULAR_FOREST_MAX_ROWS=0" 
      # shellcheck disable=SC2086  # VARIANTS is a list of arguments
      python3 -m benchmarks classic_batching --duration 5 --attempts 1 --sweep-tabular-ms --sweep-text-ms \
        --env INFSTACK_EMBEDDING__DEVICE=cuda:0 ${VARIANTS:-} --name "classic_ab_gpu_${GPU}_${TAG}"
      cp benchmarks/results/classic_ab_gpu_"${GPU}"_"${TAG}".* "$OUT"/ 2>/dev/null ;;
    embedding)  # issue 16: embedding misses vs infinity-emb, both on cuda, and at the whole Bento's public port;
      # $VARIANTS: more embedding_peers arguments, e.g. "--variant eager:INFSTACK_EMBEDDING__CUDA_GRAPHS=false"
      # shellcheck disable=SC2086  # VARIANTS is a list of arguments
      python3 -m benchmarks embedding_peers --infinity-python "${INFINITY_PYTHON:?set INFINITY_PYTHON}" \
        --device cuda --seconds 8 --rounds 1 --quiet-wait-s 3 --gateway \
        --gateway-env INFSTACK_EMBEDDING__DEVICE=cuda:0 --gateway-env INFSTACK_LLM__ENFORCE_EAGER=true \
        --gateway-env INFSTACK_LLM__GPU_MEMORY_UTILIZATION=0.3 ${VARIANTS:-} \
        --out "$OUT/embedding_vs_infinity_gpu_${GPU}_${TAG}_gateway.json" ;;
    embedding_passes)  # one MiniLM forward pass, eager vs CUDA graphs, 1..64 texts (diagnostic)
      python3 -m benchmarks embedding_passes --device cuda:0 --out "$OUT/embedding_passes_gpu_${GPU}_${TAG}.json" ;;
    classic_text)  # issue 16: ours only (no LitServe), both models at c=1/8, the embedding worker's GIL switch interval
      python3 -m benchmarks classic_batching --duration 5 --attempts 1 --concurrency 1 8 \
        --sweep-tabular-ms --sweep-text-ms --env INFSTACK_EMBEDDING__DEVICE=cuda \
        --variant gil_0.5ms:INFSTACK_EMBEDDING__GIL_SWITCH_INTERVAL_MS=0.5 \
        --name classic_gil_switch_gpu_h200_dec02
      cp benchmarks/results/classic_gil_switch_gpu_h200_dec02.* "$OUT"/ 2>/dev/null ;;
    profile_text)  # issue 16: py-spy of every worker, text at 8 clients, ClassicML alone then the whole Bento
      # (needs py-spy: PYSPY=/path/to/py-spy; the GPU image has none, carry its wheel)
      INFSTACK_EMBEDDING__DEVICE=cuda:0 INFSTACK_LLM__ENFORCE_EAGER=true INFSTACK_LLM__GPU_MEMORY_UTILIZATION=0.3 \
        python3 -m benchmarks profile_workers --model text --concurrency 8 --duration 20 \
        --pyspy "${PYSPY:-py-spy}" --out "$OUT/profile_text_gpu_${GPU}_${TAG}" ;;
    models)  # the classic models and the tiny LLM the gateway's defaults serve
      python3 -m models.ensure ;;
    gputests)
      python3 -m pytest tests/gpu -m gpu -p no:cacheprovider -q 2>&1 | tail -30 ;;
    *) echo "unknown step $step"; status=2 ;;
  esac
  rc=$?; [ $rc -ne 0 ] && status=$rc
done
exit $status
