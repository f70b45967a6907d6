"""Train the classic-ML service's two models and save them to the BentoML model store, offline.

Run ``python -m models.train_classic`` (``--force`` retrains). Both models use a fixed seed and a stratified
80/20 split; the held-out accuracy is printed and stored in the model's metadata with the data source.

- Text topic classifier: scikit-learn ``LogisticRegression`` over all-MiniLM-L6-v2 embeddings, un-normalized
  (exactly the vectors the embedding-cache service returns by default; its model comes from settings), of ``models/data/stdlib_docstrings.csv``:
  2,107 first paragraphs of CPython 3.11 standard-library docstrings, each labeled with its module's family
  (text, files, network, concurrency, formats, numbers, time, devtools). The CSV is committed; it is built by
  ``python -m models.build_docstring_dataset`` from the interpreter's own modules (no download).
- Tabular classifier: XGBoost on scikit-learn's bundled Wisconsin diagnostic breast-cancer data
  (``sklearn.datasets.load_breast_cancer``: 569 rows, 30 features, classes malignant/benign; ships with
  scikit-learn, no download).

Idempotent: a model's version is a hash of its data, parameters and library versions, so a second run finds
the same tag in the store and trains nothing. ``ensure_models()`` is what test fixtures and ``make
serve-classic`` call.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml
import joblib
import numpy as np
import sklearn
import xgboost as xgb
from bentoml.exceptions import NotFound
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from models.build_docstring_dataset import DATA_PATH
from services.classic.models import BOOSTER_FILE, TEXT_FILE, TabularClassifier, TextClassifier
from services.settings import Settings, get_settings

SEED = 0
TEST_SIZE = 0.2
TEXT_PARAMS: dict[str, Any] = {"C": 3.0, "max_iter": 3000}
TABULAR_PARAMS: dict[str, Any] = {
    "n_estimators": 200, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.9, "colsample_bytree": 0.8,
    "tree_method": "hist", "n_jobs": 2,
}  # fmt: skip
TEXT_SOURCE = (
    "models/data/stdlib_docstrings.csv: first paragraphs of CPython 3.11 stdlib docstrings labeled by "
    "module family (models/build_docstring_dataset.py)"
)
TABULAR_SOURCE = (
    "sklearn.datasets.load_breast_cancer (Wisconsin diagnostic breast cancer, ships with sklearn)"
)
Log = Callable[[str], None]


def load_text_dataset(path: Path = DATA_PATH) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def fingerprint(*parts: object) -> str:
    """A model version: the same inputs give the same tag, so training is skipped when it exists."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit_text_classifier(vectors: np.ndarray, labels: list[str]) -> tuple[TextClassifier, float]:
    """Fit on 80% (stratified, seeded); accuracy on the held-out 20% through the serving code path."""
    x_train, x_test, y_train, y_test = train_test_split(
        vectors, labels, test_size=TEST_SIZE, random_state=SEED, stratify=labels
    )
    model = TextClassifier(LogisticRegression(random_state=SEED, **TEXT_PARAMS).fit(x_train, y_train))
    predicted = np.asarray(model.class_names)[model.predict_proba(x_test).argmax(axis=1)]
    return model, float(np.mean(predicted == np.asarray(y_test)))


def fit_tabular_classifier() -> tuple[TabularClassifier, float, int]:
    """XGBoost on breast-cancer; (model, held-out accuracy, training rows)."""
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_SIZE, random_state=SEED, stratify=data.target
    )
    estimator = xgb.XGBClassifier(random_state=SEED, **TABULAR_PARAMS).fit(x_train, y_train)
    model = TabularClassifier(estimator.get_booster(), [str(n) for n in data.target_names])
    accuracy = float(np.mean(model.predict_proba(x_test).argmax(axis=1) == y_test))
    return model, accuracy, len(x_train)


def _reusable(kind: str, tag: str, force: bool, log: Log) -> bentoml.Model | None:
    """The stored model with this exact fingerprint (data, parameters, seed, library versions), unless
    retraining is forced: the same inputs train the same model, so it is not trained twice."""
    if force:
        return None
    try:
        found = bentoml.models.get(tag)
    except NotFound:
        return None
    log(f"[{kind}] {tag} is in the model store (accuracy {found.info.metadata['accuracy']:.3f}); reusing it")
    return found


def ensure_text_model(
    name: str, embedding_model: str, force: bool = False, log: Log = print
) -> bentoml.Model:
    texts, labels = load_text_dataset()
    version = fingerprint(_sha256(DATA_PATH), TEXT_PARAMS, SEED, embedding_model, sklearn.__version__)
    tag = f"{name}:{version}"
    if (found := _reusable("text", tag, force, log)) is not None:
        return found
    started = time.perf_counter()
    log(f"[text] loading {embedding_model}")
    from services.embedding.model import load_sentence_model  # imports torch: only when training

    encoder = load_sentence_model(embedding_model)
    chunks = []
    for start in range(0, len(texts), 256):
        chunks.append(encoder.encode(texts[start : start + 256], batch_size=64, convert_to_numpy=True))
        log(f"[text] embedded {min(start + 256, len(texts))}/{len(texts)} texts")
    model, accuracy = fit_text_classifier(np.concatenate(chunks).astype(np.float32), labels)
    log(f"[text] {len(model.class_names)} classes, held-out accuracy {accuracy:.3f}")
    metadata = {
        "accuracy": accuracy, "source": TEXT_SOURCE, "embedding_model": embedding_model, "normalized": False,
        "class_names": model.class_names, "rows": len(texts), "test_size": TEST_SIZE, "seed": SEED,
        "params": TEXT_PARAMS,
    }  # fmt: skip
    with bentoml.models.create(tag, metadata=metadata) as stored:
        joblib.dump(model.estimator, stored.path_of(TEXT_FILE))
    log(f"[text] saved {tag} in {time.perf_counter() - started:.1f} s")
    return bentoml.models.get(tag)


def ensure_tabular_model(name: str, force: bool = False, log: Log = print) -> bentoml.Model:
    version = fingerprint(TABULAR_PARAMS, SEED, xgb.__version__, sklearn.__version__)
    tag = f"{name}:{version}"
    if (found := _reusable("tabular", tag, force, log)) is not None:
        return found
    started = time.perf_counter()
    log("[tabular] training XGBoost on load_breast_cancer")
    model, accuracy, rows = fit_tabular_classifier()
    log(f"[tabular] {model.n_features} features, held-out accuracy {accuracy:.3f}")
    metadata = {
        "accuracy": accuracy, "source": TABULAR_SOURCE, "class_names": model.class_names,
        "n_features": model.n_features, "train_rows": rows, "test_size": TEST_SIZE, "seed": SEED,
        "params": TABULAR_PARAMS,
    }  # fmt: skip
    with bentoml.models.create(tag, metadata=metadata) as stored:
        model.booster.save_model(stored.path_of(BOOSTER_FILE))
    log(f"[tabular] saved {tag} in {time.perf_counter() - started:.1f} s")
    return bentoml.models.get(tag)


def ensure_models(
    settings: Settings | None = None, force: bool = False, log: Log = print
) -> dict[str, bentoml.Model]:
    """Both models, trained only where the store lacks this exact version. Names come from settings; the
    text classifier is trained on the embedding service's model, since its vectors are what it will see."""
    settings = settings or get_settings()
    config = settings.classic
    return {
        "text": ensure_text_model(
            bentoml.Tag.from_taglike(config.text_model).name, settings.embedding.model_id, force, log
        ),
        "tabular": ensure_tabular_model(bentoml.Tag.from_taglike(config.tabular_model).name, force, log),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="train even if the version is in the store")
    args = parser.parse_args()
    for kind, model in ensure_models(force=args.force).items():
        print(f"{kind}: {model.tag} accuracy={model.info.metadata['accuracy']:.3f}")


if __name__ == "__main__":
    main()
