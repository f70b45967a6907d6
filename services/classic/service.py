"""ClassicML: the registered classic models (services/classic/registry.py) behind BentoML adaptive batching.

Each model's public API is itself a BentoML batchable API, made from its module (services/classic/
contract.py): BentoML validates each request on its own against the model's ``input_type`` (a bad row is
that request's 400, never its batch-mates' problem), then its dispatcher merges the rows of concurrent
requests into one ``predict_batch`` and splits the answer back per request, all inside the worker. A
request the dispatcher predicts would miss the model's ``max_latency_ms`` is refused at once with a 503
that names the bound (``shedding.py``).
"""

from __future__ import annotations

from typing import Any

import bentoml

from services.answer_on_error import AnswerOnError
from services.bentoml_adapter import add_middleware, fix_bentoml
from services.bentoml_dispatch import (
    batches_in_flight,
    gather_turns,
    learn_wait_from_batches,
)
from services.classic.contract import ClassicModel, observed_batch, typed_api
from services.classic.registry import MODELS
from services.classic.schemas import INPUT_TYPES, Prediction, predictions
from services.classic.shedding import BatchedRoute, ShedMessage
from services.embedding.service import EmbeddingCache
from services.gc_tuning import settle_gc_on_start
from services.relay import dependency_upstream
from services.request_id import with_request_ids
from services.settings import get_settings

fix_bentoml()
SETTINGS = get_settings()
CONFIG = SETTINGS.classic


class ClassicML:
    """Labels and class probabilities from the registered models: text topics, tabular rows, ..."""

    embedding = bentoml.depends(EmbeddingCache)

    def __init__(self) -> None:
        self.settings = SETTINGS
        self.models: dict[str, ClassicModel] = {
            model.SPEC.kind: model.load(getattr(self, _ref(model)), SETTINGS) for model in MODELS
        }
        self.embedding_upstream = dependency_upstream("embedding_cache")  # None: use BentoML's client

    _settle_gc = bentoml.on_startup(settle_gc_on_start)

    @bentoml.on_shutdown
    async def _close(self) -> None:
        if self.embedding_upstream is not None:
            await self.embedding_upstream.close()

    @bentoml.api
    def info(self) -> dict[str, object]:
        """Every model: tag, classes, held-out accuracy and training data source."""
        info: dict[str, object] = {}
        for kind, loaded in self.models.items():
            stored = getattr(self, f"{kind}_model")
            info[kind] = {"tag": str(stored.tag), "class_names": loaded.class_names, **stored.info.metadata,
                          **loaded.describe()}  # fmt: skip
        return info


def _ref(model: type[ClassicModel]) -> str:
    return model.SPEC.setting("model")  # the attribute holding its BentoModel: text_model, tabular_model


def _batched_api(model: type[ClassicModel]) -> Any:
    """The model's API: batchable, one ``predict_batch`` per merged batch."""
    spec = model.SPEC

    async def predict(self: ClassicML, rows: list[Any]) -> list[Prediction]:
        loaded = self.models[spec.kind]
        with observed_batch(spec.kind, len(rows)):
            return predictions(loaded.class_names, await loaded.predict_batch(rows, self))

    batching = {"max_batch_size": getattr(CONFIG, spec.setting("max_batch_size")),
                "max_latency_ms": getattr(CONFIG, spec.setting("max_latency_ms"))}  # fmt: skip
    api = typed_api(spec, INPUT_TYPES[spec.kind], list[Prediction], predict)
    waits_on_embeddings = spec.dependency == "embedding_cache"
    batches_in_flight(
        CONFIG.batches_in_flight_for(spec.kind, waits_on_embeddings, SETTINGS.embedding.on_gpu)
    )(api)
    learn_wait_from_batches(CONFIG.learn_wait_from_batches)(api)
    gather_turns(CONFIG.gather_turns)(api)
    return bentoml.api(batchable=CONFIG.batching, **batching)(api)


for _model in MODELS:  # declared on the class, so `bentoml build` packs each model and BentoML sees each API
    setattr(ClassicML, _ref(_model), bentoml.models.BentoModel(getattr(CONFIG, _ref(_model))))
    setattr(ClassicML, _model.SPEC.api, _batched_api(_model))

ClassicML = bentoml.service(  # type: ignore[misc]
    name="classic_ml",
    workers=CONFIG.worker_count(SETTINGS.embedding.on_gpu),
    resources={"gpu": CONFIG.gpus} if CONFIG.gpus else {"cpu": "2"},
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    # The gateway's /status calls it through BentoML's service client: never recycle its session (docs/ARCHITECTURE.md).
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)(ClassicML)

with_request_ids(ClassicML)
add_middleware(
    ClassicML,
    ShedMessage,
    routes={
        m.SPEC.route: BatchedRoute(
            m.SPEC.kind, getattr(CONFIG, m.SPEC.setting("max_latency_ms")), m.SPEC.dependency
        )
        for m in MODELS
    },
)
add_middleware(ClassicML, AnswerOnError)  # /readyz of a service with dependencies can raise
