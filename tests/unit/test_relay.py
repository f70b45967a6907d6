"""What one relay hop passes on: end-to-end headers both ways, streams as streams, bodies whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from multidict import CIMultiDict, CIMultiDictProxy
from starlette.responses import StreamingResponse

from services.relay import Upstream, request_headers, respond, response_headers


def test_hop_by_hop_headers_stay_behind_and_repeated_ones_pass() -> None:
    sent = request_headers([("Host", "a"), ("Connection", "keep-alive"), ("Content-Length", "9"),
                            ("Authorization", "Bearer x"), ("X-Request-Id", "r1"), ("Accept", "a"), ("Accept", "b"),
                            ("Transfer-Encoding", "chunked")])  # fmt: skip
    assert sent == [("Authorization", "Bearer x"), ("X-Request-Id", "r1"), ("Accept", "a"), ("Accept", "b")]
    back = CIMultiDictProxy(CIMultiDict([("Content-Type", "text/event-stream"), ("Server", "uvicorn"),
                                         ("Date", "today"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                         ("Content-Length", "5"), ("x-request-id", "r1")]))  # fmt: skip
    assert response_headers(back) == [(b"content-type", b"text/event-stream"), (b"set-cookie", b"a=1"),
                                      (b"set-cookie", b"b=2"), (b"x-request-id", b"r1")]  # fmt: skip


def test_unix_socket_and_tcp_upstreams_are_addressed_as_bentoml_spells_them() -> None:
    assert Upstream("a", "file:///tmp/x/svc.sock")._unix_path == "/tmp/x/svc.sock"
    unix = Upstream("a", "file:///tmp/x/svc.sock")
    assert unix.base_url == "http://localhost"
    tcp = Upstream("b", "http://127.0.0.1:3001/")
    assert tcp._unix_path is None and tcp.base_url == "http://127.0.0.1:3001"


async def _chunks() -> AsyncIterator[bytes]:
    yield b"data: 1\n\n"
    yield b"data: 2\n\n"


def test_an_event_stream_is_streamed_and_anything_else_is_sent_whole() -> None:
    stream = asyncio.run(
        respond(200, [(b"content-type", b"text/event-stream")], "text/event-stream", _chunks())
    )
    assert isinstance(stream, StreamingResponse)
    assert (b"content-type", b"text/event-stream") in stream.raw_headers
    whole = asyncio.run(respond(400, [(b"content-type", b"application/json")], "application/json", _chunks()))
    assert not isinstance(whole, StreamingResponse) and whole.status_code == 400
    assert whole.body == b"data: 1\n\ndata: 2\n\n"
    assert (b"content-length", b"18") in whole.raw_headers
