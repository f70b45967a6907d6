"""The two classic models as the service calls them: loaded from the model store, one call per batch.

Shared by the service and the training script (its held-out accuracy goes through the same
``predict_proba`` the service runs). Each model lives in a BentoML model directory with one file, so the
store holds plain, portable formats: a joblib pickle of the scikit-learn estimator and XGBoost's own
UBJSON booster format.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import joblib
import numpy as np
import xgboost as xgb

from services import metrics
from services.wire import from_base64

TEXT_FILE = "classifier.joblib"
BOOSTER_FILE = "booster.ubj"


class TextClassifier:
    """Logistic regression over un-normalized all-MiniLM-L6-v2 vectors (what ``embed`` returns)."""

    def __init__(self, estimator: Any, tag: str = "") -> None:
        self.estimator = estimator
        self.tag = tag
        self.class_names = [str(c) for c in estimator.classes_]

    @classmethod
    def load(cls, model: Any) -> TextClassifier:
        """From a BentoML stored model (``bentoml.models.get(tag)`` or a resolved ``BentoModel``)."""
        return cls(joblib.load(model.path_of(TEXT_FILE)), str(model.tag))

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(vectors), dtype=np.float32)


class TabularClassifier:
    """An XGBoost booster. ``inplace_predict`` skips building a DMatrix: the cheapest call per batch."""

    def __init__(self, booster: xgb.Booster, class_names: list[str], tag: str = "", threads: int = 1) -> None:
        booster.set_param({"nthread": threads})
        self.booster = booster
        self.class_names = class_names
        self.tag = tag

    @classmethod
    def load(cls, model: Any, threads: int = 1) -> TabularClassifier:
        booster = xgb.Booster()
        booster.load_model(model.path_of(BOOSTER_FILE))
        return cls(booster, list(model.info.metadata["class_names"]), str(model.tag), threads)

    @property
    def n_features(self) -> int:
        return int(self.booster.num_features())

    def predict_proba(self, rows: np.ndarray | list[list[float]]) -> np.ndarray:
        """(n, classes) probabilities; binary boosters return P(class 1) only, so complete it."""
        scores = np.asarray(self.booster.inplace_predict(np.asarray(rows, dtype=np.float32)), np.float32)
        if scores.ndim == 1:
            scores = np.column_stack([1.0 - scores, scores])
        return scores


@contextmanager
def observed_batch(model: str, rows: int) -> Iterator[None]:
    """Record one batched model call: its size and its latency, labelled by model."""
    started = time.perf_counter()
    yield
    metrics.CLASSIC_BATCH_SECONDS.labels(model).observe(time.perf_counter() - started)
    metrics.CLASSIC_BATCH_SIZE.labels(model).observe(rows)
    metrics.CLASSIC_ROWS.labels(model).inc(rows)


async def fetch_embeddings(
    embed: Callable[..., Awaitable[Any]], texts: list[str], max_texts: int
) -> np.ndarray:
    """Vectors from the embedding-cache service, in chunks it accepts; counts its cache hits.

    ``base64`` carries float32 bytes: the same values as JSON floats, without the float formatting.
    """
    chunks = [texts[i : i + max_texts] for i in range(0, len(texts), max_texts)]
    replies = await asyncio.gather(*(embed(texts=c, encoding_format="base64") for c in chunks))
    hits = sum(int(_field(r, "cache_hits")) for r in replies)
    metrics.CLASSIC_EMBEDDING_TEXTS.labels("cache").inc(hits)
    metrics.CLASSIC_EMBEDDING_TEXTS.labels("model").inc(len(texts) - hits)
    return np.concatenate([from_base64(_field(r, "embeddings")) for r in replies])


def _field(reply: Any, name: str) -> Any:
    # The service client returns the response model, or a dict where it cannot rebuild the model.
    return reply[name] if isinstance(reply, dict) else getattr(reply, name)
