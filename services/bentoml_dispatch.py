"""Fixes to BentoML 1.4.40's adaptive-batching dispatcher (``CorkDispatcher``), chosen per batchable API.

BentoML builds one dispatcher per batchable API in ``ServiceAppFactory.__init__`` and offers no setting
for what we change; :func:`patch_dispatchers` (called by ``bentoml_adapter.fix_bentoml``) wraps that
constructor and applies what a decorator marked on the API's function:

- :func:`batches_in_flight`: more than one batch running at once;
- :func:`learn_wait_from_batches`: a lone request's wait no longer teaches the dispatcher to hold the
  next one (the fix for slow answers at low load after a peak);
- :func:`gather_turns`: a starting batch takes along the requests still reaching the dispatcher.

Every batchable API also gets :func:`_lean_batch_path`, the same batching at less cost per request.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from inspect import iscoroutinefunction as is_async
from typing import Any

BATCHES_IN_FLIGHT = "infstack_batches_in_flight"  # set on a batchable API's function: its dispatcher's limit
LEARN_WAIT_FROM_BATCHES = "infstack_learn_wait_from_batches"  # set on it: forget lone requests' waits
GATHER_TURNS = "infstack_gather_turns"  # set on it: event-loop turns a starting batch waits for arrivals
_PATCHED = "infstack_patched_dispatchers"

logger = logging.getLogger(__name__)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _marker(attribute: str, value: object) -> Decorator:
    def mark(api: Callable[..., Any]) -> Callable[..., Any]:
        setattr(api, attribute, value)
        return api

    return mark


def batches_in_flight(count: int) -> Decorator:
    """Let this API's dispatcher start a batch while ``count - 1`` others are still running (BentoML's
    limit is 1). Worth it where a batch mostly waits on another process, as the text model's wait on
    the embedding service: the next batch travels while the GPU encodes this one."""
    return _marker(BATCHES_IN_FLIGHT, count)


def learn_wait_from_batches(on: bool) -> Decorator:
    """BentoML holds a request back while ``n * (its wait + a tick + per-row cost)`` stays under
    ``optimizer.wait``, the mean wait of past batches' first requests, which includes time spent queued
    behind a running batch. A load peak so teaches it to hold each request ~10 ms, and at low load the
    lone request it holds waits that long and logs it: the hold sustains itself. On: a batch of one is
    logged as having waited 0 (its wait found no partner) and the estimate is refreshed at once."""
    return _marker(LEARN_WAIT_FROM_BATCHES, on)


def gather_turns(turns: int) -> Decorator:
    """A batch about to start waits up to ``turns`` turns of the event loop while requests keep reaching
    the dispatcher, and takes them along (up to ``max_batch_size`` rows). On a busy worker the requests it
    carries reach the dispatcher a few per turn (each awaits its body, validation and middleware first),
    and BentoML's controller, holding nothing while its learned wait is short, starts a batch as soon as
    one is queued: batches of ~3 at 64 clients on an H100 host, each paying the batch's fixed cost. No
    timer: the wait ends at the first turn in which none arrived, and a batch of one request that follows
    another (a lone client's) starts at once. 0: off.

    The turns waited count in the first request's wait, which BentoML's controller learns its holds from
    (measured with it: benchmarks/results/README.md). Where more than one batch may run at once
    (:func:`batches_in_flight`), another batch can start from the same queue while one gathers."""
    return _marker(GATHER_TURNS, turns)


def _learn_wait_from_batches(dispatcher: Any) -> None:
    optimizer = dispatcher.optimizer
    log = optimizer.log_outbound

    def log_outbound(n: int, wait: float, duration: float) -> None:
        log(n=n, wait=wait if n > 1 else 0.0, duration=duration)
        if n == 1 and wait > dispatcher.TICKET_INTERVAL:  # held for nobody: stop holding now, not in 5 s
            optimizer.trigger_refresh()

    optimizer.log_outbound = log_outbound


def _gather_turns(dispatcher: Any, turns: int) -> None:
    """See :func:`gather_turns`. Wraps ``outbound_call``: the controller has taken
    the batch's jobs and holds the dispatcher's semaphore; jobs that reach the queue meanwhile join."""
    send = dispatcher.outbound_call
    partners = False  # had the last batch more than one request? (a lone client's batches never wait)

    def rows_of(jobs: Iterable[Any]) -> int:
        return sum(dispatcher.get_batch_size(job.data) for job in jobs)

    async def gather(jobs: tuple[Any, ...]) -> tuple[Any, ...]:
        rows = rows_of(jobs)
        for _ in range(turns):
            arrived = len(dispatcher._queue)
            if rows + rows_of(dispatcher._queue) >= dispatcher.max_batch_size:
                break
            await asyncio.sleep(0)  # one turn: every request the loop is carrying moves one step
            if len(dispatcher._queue) == arrived:
                break  # none reached the dispatcher in that turn: none is on its way
        if dispatcher._queue and rows < dispatcher.max_batch_size:
            jobs += tuple(dispatcher._get_inputs(dispatcher.max_batch_size - rows))
        return jobs

    async def outbound_call(jobs: tuple[Any, ...], training: bool = False) -> None:
        nonlocal partners
        if not training and (partners or len(jobs) > 1):
            try:
                jobs = await gather(jobs)
            except asyncio.CancelledError:  # the worker is stopping: free the jobs and the batch slot
                for job in jobs:
                    job.future.cancel()
                dispatcher._sema.release()
                raise
            except Exception:  # a request whose size cannot be counted: the batch goes as it was taken
                logger.exception("gathering a batch failed; sending the %d requests taken", len(jobs))
        partners = len(jobs) > 1
        await send(jobs, training)

    dispatcher.outbound_call = outbound_call


def _rows(get_batch_size: Callable[[Any], int]) -> Callable[[Any], int]:
    """A request's rows: ``len`` of a list, as BentoML's default container answers after a registry scan
    of its container types per queued request (~2% of the classic worker's CPU at 64 clients)."""

    def rows(data: Any) -> int:
        return len(data) if type(data) is list else get_batch_size(data)

    return rows


def _lean_batch_path(factory: Any) -> None:
    """BentoML's ``batch_infer``, per request: it rebuilds the API's bound callable (``inspect.signature``
    and ``functools.wraps``), wraps its dispatcher anew, and per batch scans its container registry to
    merge and split plain lists (together ~5% of the classic worker's CPU at 64 clients, py-spy, tabular).
    Here the callable and the dispatcher's entry are built once per API, and a batch of lists is merged
    and split with ``len``. Anything else (a context parameter, a non-list input) takes BentoML's path."""
    from bentoml._internal.context import server_context

    built: dict[str, Callable[[Any], Any] | None] = {}  # per API: its entry, or None for BentoML's path
    batch_infer = factory.batch_infer

    def entry(name: str) -> Callable[[Any], Any] | None:
        method = factory.service.apis[name]
        if method.ctx_param is not None or not is_async(method.func):
            return None
        func = getattr(factory._service_instance, name).local

        async def infer(batches: Sequence[list[Any]]) -> list[list[Any]]:
            if factory.enable_metrics:  # BentoML's own batch-size histogram, as its path records it
                factory.adaptive_batch_size_hist.labels(
                    runner_name=factory.service.name, worker_index=server_context.worker_index,
                    method_name=name, service_version=server_context.bento_version,
                    service_name=server_context.bento_name,
                ).observe(len(batches))  # fmt: skip
            merged = [row for rows in batches for row in rows]
            result = await func(merged)
            ends = list(itertools.accumulate(len(rows) for rows in batches))
            return [result[end - len(rows) : end] for end, rows in zip(ends, batches, strict=True)]

        return factory.dispatchers[name](infer)  # type: ignore[no-any-return]

    async def lean(name: str, input_args: tuple[Any, ...], input_kwargs: dict[str, Any]) -> Any:
        if name not in built:
            built[name] = entry(name)
        if input_args:
            value = input_args[0] if len(input_args) == 1 and not input_kwargs else None
        else:  # the API's one field by name, as BentoML's HTTP path passes it
            value = next(iter(input_kwargs.values())) if len(input_kwargs) == 1 else None
        if (call := built[name]) is None or type(value) is not list:
            return await batch_infer(name, input_args, input_kwargs)
        return await call(value)

    factory.batch_infer = lean
    for dispatcher in factory.dispatchers.values():
        dispatcher.get_batch_size = _rows(dispatcher.get_batch_size)


def patch_dispatchers() -> None:
    """Wrap ``ServiceAppFactory.__init__`` once: each dispatcher it built gets what its API is marked with."""
    from _bentoml_impl.server import app
    from bentoml._internal.marshal.dispatcher import NonBlockSema

    factory = app.ServiceAppFactory
    if getattr(factory.__init__, _PATCHED, False):
        return
    build = factory.__init__

    @functools.wraps(build)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        _lean_batch_path(self)
        for name, dispatcher in self.dispatchers.items():
            func = self.service.apis[name].func
            if (count := getattr(func, BATCHES_IN_FLIGHT, 1)) > 1:
                dispatcher._sema = NonBlockSema(count)
            if getattr(func, LEARN_WAIT_FROM_BATCHES, False):
                _learn_wait_from_batches(dispatcher)
            if (turns := getattr(func, GATHER_TURNS, 0)) > 0:
                _gather_turns(dispatcher, turns)

    setattr(init, _PATCHED, True)
    factory.__init__ = init
