"""ClassicML: a text topic classifier and a tabular classifier, behind BentoML adaptive batching.

The public APIs are themselves BentoML batchable APIs. BentoML validates each request on its own
(``schemas.py``: a bad row is that request's 400, never its batch-mates' problem), then its dispatcher
merges the rows of concurrent requests into one model call and splits the answer back per request,
all inside the worker. (Calling a batchable API through ``self.to_async`` instead costs a JSON
round trip through the whole ASGI stack per request: 4-12 ms here, next to a 0.3 ms booster call.)
Texts get their vectors from the embedding-cache service (``bentoml.depends``), one request per
batch, so a text seen before by any client of the shared cache costs a lookup, not a transformer
pass. A request the dispatcher predicts would miss ``max_latency_ms`` is refused at once with a 503
that names the bound (``shedding.py``).
"""

from __future__ import annotations

from http import HTTPStatus

import aiohttp
import bentoml
from bentoml.exceptions import BentoMLException

from services.answer_on_error import AnswerOnError
from services.bentoml_adapter import add_middleware
from services.classic.models import TabularClassifier, TextClassifier, fetch_embeddings, observed_batch
from services.classic.schemas import Prediction, Rows, Texts, predictions
from services.classic.shedding import BatchedRoute, DependencyUnavailable, ShedMessage
from services.embedding.service import EmbeddingCache
from services.request_id import with_request_ids
from services.settings import get_settings

SETTINGS = get_settings()
CONFIG = SETTINGS.classic


@bentoml.service(
    name="classic_ml",
    workers=CONFIG.workers,
    resources={"cpu": "2"},
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    # The gateway's /status calls it through BentoML's service client: never recycle its session (docs/ARCHITECTURE.md).
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
    async def classify_text(self, texts: Texts) -> list[Prediction]:
        """The topic family (text, files, network, ...) of each text. One embedding request and one
        classifier call per batch."""
        with observed_batch("text", len(texts)):
            try:
                vectors = await fetch_embeddings(
                    self.embedding.to_async.embed, texts, SETTINGS.embedding.max_texts
                )
            except aiohttp.ClientError as exc:  # not answering at all
                raise DependencyUnavailable(f"embedding_cache: {exc}") from exc
            except BentoMLException as exc:
                if exc.error_code >= HTTPStatus.INTERNAL_SERVER_ERROR:  # its 503 is not our shed
                    raise DependencyUnavailable(f"embedding_cache: {exc}") from exc
                raise
            return predictions(self.text.class_names, self.text.predict_proba(vectors))

    @bentoml.api(
        batchable=CONFIG.batching,
        max_batch_size=CONFIG.tabular_max_batch_size,
        max_latency_ms=CONFIG.tabular_max_latency_ms,
    )
    def predict_tabular(self, rows: Rows) -> list[Prediction]:
        """Malignant or benign for each row of the 30 breast-cancer features (sklearn's column order).
        One booster call per batch."""
        with observed_batch("tabular", len(rows)):
            return predictions(self.tabular.class_names, self.tabular.predict_proba(rows))


with_request_ids(ClassicML)
add_middleware(
    ClassicML,
    ShedMessage,
    routes={
        "/classify_text": BatchedRoute("text", CONFIG.text_max_latency_ms, dependency="embedding_cache"),
        "/predict_tabular": BatchedRoute("tabular", CONFIG.tabular_max_latency_ms),
    },
)


add_middleware(ClassicML, AnswerOnError)  # /readyz of a service with dependencies can raise
