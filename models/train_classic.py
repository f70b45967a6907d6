"""Train every classic model of the registry and save it to the BentoML model store, offline.

Run ``python -m models.train_classic`` (``--force`` retrains). Each model's module
(services/classic/registry.py) says how it trains: a fixed seed, a stratified 80/20 split, the held-out
accuracy printed and stored in the model's metadata with its data source; its data ships with the repo or
with scikit-learn (no download).

Idempotent: a model's version is a hash of its data, parameters and library versions, so a second run finds
the same tag in the store and trains nothing. ``ensure_models()`` is what ``make models``, the test
fixtures and the benchmarks call.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from models.build_docstring_dataset import DATA_PATH
from services.classic.contract import Log
from services.classic.registry import MODELS
from services.classic.tabular import fit as fit_tabular_classifier
from services.classic.text import fit as fit_text_classifier
from services.classic.text import load_dataset
from services.classic.training import fingerprint
from services.settings import Settings, get_settings

__all__ = [
    "ensure_models",
    "fingerprint",
    "fit_tabular_classifier",
    "fit_text_classifier",
    "load_text_dataset",
]


def load_text_dataset(path: Path = DATA_PATH) -> tuple[list[str], list[str]]:
    """The committed docstring corpus: (texts, family labels)."""
    return load_dataset(path)


def ensure_models(settings: Settings | None = None, force: bool = False, log: Log = print) -> dict[str, Any]:
    """Every registered model, trained only where the store lacks this exact version, by kind. Names come
    from settings; the text classifier is trained on the embedding service's model (its vectors are what
    it will see)."""
    settings = settings or get_settings()
    return {model.SPEC.kind: model.ensure_trained(settings, force, log) for model in MODELS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="train even if the version is in the store")
    args = parser.parse_args()
    for kind, model in ensure_models(force=args.force).items():
        print(f"{kind}: {model.tag} accuracy={model.info.metadata['accuracy']:.3f}")


if __name__ == "__main__":
    main()
