"""What a classic-ML model is to this project: one module implementing ``ClassicModel``, one registry line.

From a model's ``SPEC`` and class follow everything else: its settings (``INFSTACK_CLASSIC__<KIND>_MODEL``,
``<KIND>_MAX_BATCH_SIZE``, ``<KIND>_MAX_LATENCY_MS`` and its own fields), its batchable API on the
classic-ML service, the 503 that names its batching bound, its route on the gateway, its training in
``python -m models.train_classic``, its row in docs/CLASSIC_MODELS.md and the test fixtures' tags.
Modules implementing it import heavy libraries (xgboost, torch...) inside functions only: the settings
read the specs at import time in every process of the Bento.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, ClassVar, Protocol

import numpy as np

from services import metrics

Log = Callable[[str], None]


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "text": metrics label, settings prefix, key in info() and in the model store fixtures
    api: str  # the API and route name: "classify_text" -> POST /classify_text
    field: str  # the request's one field: {"texts": [...]}
    doc: str  # the API's description
    default_tag: str  # model-store tag when INFSTACK_CLASSIC__<KIND>_MODEL is not set
    max_batch_size: int  # adaptive batching defaults (settable)
    max_latency_ms: int
    dependency: str | None = None  # a service this model calls; its failure is this route's 502
    # its own settings: name -> (type, Field)
    settings: dict[str, tuple[Any, Any]] = dataclass_field(default_factory=dict)

    @property
    def route(self) -> str:
        return f"/{self.api}"

    def setting(self, name: str) -> str:
        """The settings field of one of the common knobs: ``model``, ``max_batch_size``, ``max_latency_ms``."""
        return f"{self.kind}_{name}"


class ClassicModel(Protocol):
    """A loaded model, as the service calls it: one ``predict_batch`` per adaptive batch."""

    SPEC: ClassVar[ModelSpec]
    tag: str
    class_names: list[str]

    @classmethod
    def input_type(cls, settings: Any) -> Any:
        """The pydantic type of the request field (a bounded list of rows): bad rows are 400s naming them."""

    @classmethod
    def load(cls, stored: Any, settings: Any) -> ClassicModel:
        """From its model-store entry; raises ValueError naming the setting when they disagree."""

    async def predict_batch(self, rows: list[Any], service: Any) -> np.ndarray:
        """(n, classes) probabilities for the rows of one batch, in ``class_names`` order."""

    def describe(self) -> dict[str, Any]:
        """What ``info`` shows besides the stored metadata (tag, classes)."""

    @classmethod
    def ensure_trained(cls, settings: Any, force: bool, log: Log) -> Any:
        """The stored model for these settings, trained only when the store lacks this exact version."""


@contextmanager
def observed_batch(model: str, rows: int) -> Iterator[None]:
    """Record one batched model call: its size and its latency, labelled by model."""
    started = time.perf_counter()
    yield
    metrics.CLASSIC_BATCH_SECONDS.labels(model).observe(time.perf_counter() - started)
    metrics.CLASSIC_BATCH_SIZE.labels(model).observe(rows)
    metrics.CLASSIC_ROWS.labels(model).inc(rows)


def typed_api(
    spec: ModelSpec, input_type: Any, returns: Any, call: Callable[[Any, Any], Awaitable[Any]]
) -> Any:
    """An API function for ``spec``, named, documented and typed as if written by hand (BentoML derives
    the route, the validation and the schema from the signature): ``api(self, <field>: input_type)``
    calls ``call(self, rows)``. A batchable API gets its merged batch positionally, any other by name."""

    async def api(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await call(self, args[0] if args else kwargs[spec.field])

    api.__name__ = api.__qualname__ = spec.api
    api.__doc__ = spec.doc
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("self", kind), inspect.Parameter(spec.field, kind, annotation=input_type)]
    api.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    return api
