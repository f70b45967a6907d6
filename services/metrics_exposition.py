"""One Prometheus exposition out of several: the Bento's public ``/metrics``.

Under ``bentoml serve`` every service of the Bento writes its series to one multiprocess directory, so
each service's ``/metrics`` already holds all of them; the vLLM engine is a separate process with its own
registry, so its ``vllm:*`` families are fetched and added. In a split deployment each service has its
own directory, so the gateway fetches every dependency's ``/metrics`` too. Families are merged by name and
samples deduplicated by name and labels, so every family appears once whatever overlaps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from services.relay import Upstream, UpstreamUnavailable

log = logging.getLogger(__name__)
ENGINE_PREFIX = "vllm:"
_FETCH_TIMEOUT_S = 5.0


def _families(texts: Iterable[str]) -> Iterator[Metric]:
    merged: dict[str, Metric] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in seen:
                    seen.add(key)
                    target.samples.append(sample)
    yield from merged.values()


class _Merged:
    """A collector over already-collected families, so prometheus_client renders them."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def collect(self) -> Iterator[Metric]:
        return _families(self.texts)


def merge(texts: list[str]) -> str:
    """One valid exposition holding every family of ``texts`` once (first source wins a duplicate)."""
    return generate_latest(_Merged(texts)).decode()


async def merged(texts: list[str]) -> str:
    """``merge`` off the event loop: parsing a few thousand lines takes milliseconds of CPU."""
    return await asyncio.to_thread(merge, texts)


async def scrape(upstream: Upstream, path: str = "/metrics") -> str:
    """Another process's exposition, or "" when it does not answer (a restarting engine or service
    must not fail the whole scrape)."""
    try:
        response = await asyncio.wait_for(upstream.request("GET", path), _FETCH_TIMEOUT_S)
        async with response:
            return await response.text() if response.status == 200 else ""
    except (UpstreamUnavailable, TimeoutError) as exc:
        log.info("metrics: %s not scraped (%s)", upstream.name, exc)
        return ""


def only_engine_families(text: str) -> str:
    """The engine's ``vllm:*`` families (its process_* and python_* series would clash with ours)."""
    keep = ("# HELP " + ENGINE_PREFIX, "# TYPE " + ENGINE_PREFIX, ENGINE_PREFIX)
    lines = [line for line in text.splitlines() if line.startswith(keep)]
    return "\n".join(lines) + "\n" if lines else ""


def with_replica_label(text: str, replica: int) -> str:
    """Every sample of an exposition labelled ``replica="N"``: data-parallel replicas export the same
    series (vLLM labels them ``engine="0"`` in each), which must stay apart when they are joined."""
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, brace, rest = line.partition("{")
            if brace:
                line = f'{name}{{replica="{replica}",{rest}'
            else:
                name, _, value = line.partition(" ")
                line = f'{name}{{replica="{replica}"}} {value}'
        out.append(line)
    return "\n".join(out) + "\n" if out else ""


async def engine_families(engines: list[Upstream]) -> str:
    """The ``vllm:*`` families of the engine, or of every replica (labelled) when there are several."""
    texts = [only_engine_families(t) for t in await asyncio.gather(*(scrape(e) for e in engines))]
    if len(texts) == 1:
        return texts[0]
    return await merged([with_replica_label(text, i) for i, text in enumerate(texts)])
