"""Relaying an aiohttp response body chunk by chunk: one implementation for every proxy hop.

Chunks are passed on as they arrive (never buffered or re-chunked: stream-batching timers in
wrappers cost tens of ms of TTFT). If the consumer stops early (the client disconnected), the
upstream connection is closed rather than returned to the pool, which is what makes vLLM abort the
request instead of generating into the void.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp


async def relay_chunks(
    upstream: aiohttp.ClientResponse, record: list[bytes] | None = None
) -> AsyncIterator[bytes]:
    finished = False
    try:
        async for chunk in upstream.content.iter_any():
            if record is not None:
                record.append(chunk)
            yield chunk
        finished = True
    finally:
        if finished:
            upstream.release()
        else:
            upstream.close()
