"""Garbage collection for long-lived serving workers: freeze what start-up built, collect young objects
rarely.

A BentoML worker allocates many short-lived objects per request (pydantic models, ASGI scopes, metric
labels), so CPython's default thresholds (700, 10, 10) run a young collection every few requests and a
full one, over every object loading left behind (schemas, models, modules), every few hundred. Those full
passes stalled the event loop for tens of milliseconds: at 64 clients the classic tabular API's p99 was
175 ms with p50 43 ms (2-core CPU, docs/ARCHITECTURE.md). Freezing moves start-up's objects out of every
later collection; larger thresholds make collections rare. Reference cycles are still collected.
"""

from __future__ import annotations

import gc

from services.settings import get_settings


def settle_gc(thresholds: tuple[int, int, int]) -> None:
    """Call once a worker has loaded what it serves: collect, freeze the survivors, set the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def settle_gc_on_start(service: object) -> None:
    """Every service's start-up hook (``_settle_gc = bentoml.on_startup(settle_gc_on_start)``): it runs in
    each worker after the service object, its models and connections, exist."""
    settle_gc(get_settings().process.gc_thresholds)
