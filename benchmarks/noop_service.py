"""Our HTTP ceiling: a benchmark-only BentoML service whose one POST does no model work.

Served by ``benchmarks/classic_batching.py`` with ``bentoml serve benchmarks.noop_service:NoOp`` beside
ClassicML, on the same process model: the same worker count, resources and traffic settings (read from
the same settings), the same BentoML fixes and the same middleware stack (request ids, shed messages,
answers on error), and the tabular API's input type, so a request is validated as ours is. It answers the
rows it was sent. What it lacks is exactly the model path: no batching dispatcher, no booster.

Never part of the Bento: the production services carry no no-op route.
"""

from __future__ import annotations

import bentoml

from services.answer_on_error import AnswerOnError
from services.bentoml_adapter import add_middleware, fix_bentoml
from services.classic.schemas import Rows
from services.classic.shedding import ShedMessage
from services.gc_tuning import settle_gc_on_start
from services.request_id import with_request_ids
from services.settings import get_settings

fix_bentoml()
SETTINGS = get_settings()
CONFIG = SETTINGS.classic


@bentoml.service(
    name="noop",
    workers=CONFIG.worker_count(SETTINGS.embedding.on_gpu),  # as ClassicML's
    resources={"gpu": CONFIG.gpus} if CONFIG.gpus else {"cpu": "2"},
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)
class NoOp:
    """One POST that answers its rows: what a request costs our stack before any model work."""

    _settle_gc = bentoml.on_startup(settle_gc_on_start)  # as ClassicML's workers

    @bentoml.api
    async def echo(self, rows: Rows) -> Rows:
        return rows


with_request_ids(NoOp)
add_middleware(NoOp, ShedMessage, routes={})  # ClassicML's stack, less its batched routes
add_middleware(NoOp, AnswerOnError)
