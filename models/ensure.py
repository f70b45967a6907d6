"""Make sure every model the default Bento needs is in the BentoML model store (idempotent).

`make serve` and `make build` call this first: on a fresh machine it builds the tiny test LLM and
trains the classic models (about a minute on 2 cores); afterwards it only checks content hashes.
A configured LLM (INFSTACK_LLM__MODEL pointing at a directory, a store tag or a Hub id) is left alone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from models.build_tiny_llm import build_tiny_llm, register_in_bentoml
from models.train_classic import ensure_models
from services.settings import get_settings

TINY_LLM = "tiny-llm"


def ensure_all() -> None:
    settings = get_settings()
    if settings.llm.model == TINY_LLM:
        with tempfile.TemporaryDirectory() as tmp:
            print("tiny LLM:", register_in_bentoml(build_tiny_llm(Path(tmp) / TINY_LLM), name=TINY_LLM))
    for kind, model in ensure_models(settings).items():
        print(f"classic {kind}: {model.tag}")


if __name__ == "__main__":
    ensure_all()
