"""ClassicML: a text topic classifier and a tabular classifier, behind BentoML adaptive batching.

The public APIs validate (``schemas.py``) and pass their rows to a batchable API through
``self.to_async``: under ``bentoml serve`` that call goes through the batching dispatcher, so concurrent
requests share one model call. Texts get their vectors from the embedding-cache service
(``bentoml.depends``), one request per batch, so a text seen before by any client of the shared cache
costs a lookup, not a transformer pass. A request the dispatcher predicts would miss ``max_latency_ms``
is refused at once with 503 and a message naming the bound.
"""

from __future__ import annotations

import bentoml
import numpy as np
from bentoml.exceptions import ServiceUnavailable
from starlette.responses import JSONResponse

from services import metrics
from services.classic.models import TabularClassifier, TextClassifier, fetch_embeddings, observed_batch
from services.classic.schemas import Predictions, Rows, Texts, overloaded
from services.embedding.service import EmbeddingCache
from services.settings import get_settings

SETTINGS = get_settings()
CONFIG = SETTINGS.classic


@bentoml.service(
    name="classic_ml",
    workers=CONFIG.workers,
    resources={"cpu": "2"},
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    # Its own batchable APIs are called through BentoML's service client (docs: NOTES.md, BentoML).
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)
class ClassicML:
    """Labels and class probabilities for texts (topic of a Python docstring) and tabular rows."""

    embedding = bentoml.depends(EmbeddingCache)
    text_model = bentoml.models.BentoModel(CONFIG.text_model)
    tabular_model = bentoml.models.BentoModel(CONFIG.tabular_model)

    def __init__(self) -> None:
        self.text = TextClassifier.load(self.text_model)
        self.tabular = TabularClassifier.load(self.tabular_model, threads=CONFIG.model_threads)
        if self.tabular.n_features != CONFIG.tabular_features:
            raise ValueError(
                f"{self.tabular.tag} takes {self.tabular.n_features} features but "
                f"INFSTACK_CLASSIC__TABULAR_FEATURES={CONFIG.tabular_features}"
            )
        trained_on = self.text_model.info.metadata.get("embedding_model")
        if trained_on != SETTINGS.embedding.model_id:
            raise ValueError(
                f"{self.text.tag} was trained on {trained_on} vectors but the embedding service "
                f"serves {SETTINGS.embedding.model_id} (INFSTACK_EMBEDDING__MODEL_ID)"
            )

    @bentoml.api
    async def classify_text(self, texts: Texts) -> Predictions:
        """The topic family (text, files, network, ...) of each text."""
        try:
            proba = await self.to_async.classify_text_batch(texts)  # type: ignore[attr-defined]
        except ServiceUnavailable:
            return self._shed("text", CONFIG.text_max_latency_ms)  # type: ignore[return-value]
        return Predictions.from_proba(self.text.tag, self.text.class_names, proba)

    @bentoml.api
    async def predict_tabular(self, rows: Rows) -> Predictions:
        """Malignant or benign for each row of the 30 breast-cancer features (sklearn's column order)."""
        try:
            proba = await self.to_async.predict_tabular_batch(rows)  # type: ignore[attr-defined]
        except ServiceUnavailable:
            return self._shed("tabular", CONFIG.tabular_max_latency_ms)  # type: ignore[return-value]
        return Predictions.from_proba(self.tabular.tag, self.tabular.class_names, proba)

    @bentoml.api
    def info(self) -> dict[str, object]:
        """Both models: tag, classes, held-out accuracy and training data source."""
        return {
            kind: {"tag": str(ref.tag), "class_names": model.class_names, **ref.info.metadata}
            for kind, ref, model in (
                ("text", self.text_model, self.text),
                ("tabular", self.tabular_model, self.tabular),
            )
        }

    @bentoml.api(
        batchable=CONFIG.batching,
        max_batch_size=CONFIG.text_max_batch_size,
        max_latency_ms=CONFIG.text_max_latency_ms,
    )
    async def classify_text_batch(self, texts: list[str]) -> np.ndarray:
        """The batched call: one embedding request for the whole batch, then the classifier."""
        with observed_batch("text", len(texts)):
            vectors = await fetch_embeddings(
                self.embedding.to_async.embed, texts, SETTINGS.embedding.max_texts
            )
            return self.text.predict_proba(vectors)

    @bentoml.api(
        batchable=CONFIG.batching,
        max_batch_size=CONFIG.tabular_max_batch_size,
        max_latency_ms=CONFIG.tabular_max_latency_ms,
    )
    def predict_tabular_batch(self, rows: list[list[float]]) -> np.ndarray:
        """The batched booster call, and nothing else."""
        with observed_batch("tabular", len(rows)):
            return self.tabular.predict_proba(rows)

    def _shed(self, model: str, max_latency_ms: int) -> JSONResponse:
        metrics.CLASSIC_OVERLOADED.labels(model).inc()
        return overloaded(model, max_latency_ms)
