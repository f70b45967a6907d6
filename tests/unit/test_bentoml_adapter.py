"""Every BentoML internal the project relies on still exists and behaves (services/bentoml_adapter.py).

A BentoML upgrade that moves one of them fails here, by name, instead of somewhere in a served Bento.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services import bentoml_adapter

# A service with a mounted app, built in a fresh process (a second to_asgi() in one process clashes on
# BentoML's Prometheus series): which routes does BentoML place after the mounted apps?
ROUTES_AFTER_MOUNTS = """
import json
import bentoml
from starlette.applications import Starlette
from _bentoml_impl.server.mount import PassiveMount

@bentoml.asgi_app(Starlette(), path="/", name="probe")
@bentoml.service
class Probe:
    @bentoml.api
    def ping(self) -> str:
        return "pong"

routes = Probe.to_asgi(is_main=True).routes
mounted = next(i for i, r in enumerate(routes) if isinstance(r, PassiveMount))
print(json.dumps([r.path for r in routes[mounted + 1 :]]))
"""


def test_dependency_urls_come_from_the_runner_map_bentoml_gives_a_worker() -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer

    before = BentoMLContainer.remote_runner_mapping.get()
    try:
        BentoMLContainer.remote_runner_mapping.set({"llm": "file:///tmp/llm.sock", "x": "http://h:1"})
        assert bentoml_adapter.dependency_url("llm") == "file:///tmp/llm.sock"
        assert bentoml_adapter.dependency_url("x") == "http://h:1"
        assert bentoml_adapter.dependency_url("in_process") is None
    finally:
        BentoMLContainer.remote_runner_mapping.set(before)


def test_the_typed_generate_apis_are_marked_streaming() -> None:
    from services.llm.service import LLM

    method = LLM.apis["generate"]
    assert method.is_stream is True
    assert method.output_spec.media_type == bentoml_adapter.STREAM_MEDIA_TYPE
    route = next(r for r in LLM.schema()["routes"] if r["name"] == "generate")
    assert route["output"]["is_stream"] is True  # what BentoML's clients read from /schema.json


def test_the_openapi_document_is_a_dict_with_the_typed_apis() -> None:
    from services.llm.service import LLM

    document = bentoml_adapter.openapi_document(LLM)
    assert "/generate" in document["paths"] and document["openapi"].startswith("3.")
    json.dumps(document)  # plain data, servable as JSON


@pytest.mark.timeout(120)
def test_only_the_web_ui_comes_after_mounted_apps_so_the_catch_all_leaves_exactly_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ROUTES_AFTER_MOUNTS], capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr[-2000:]
    after = json.loads(done.stdout.strip().splitlines()[-1])
    assert "/docs.json" in after and "/" in after
    for path in after:
        assert bentoml_adapter.is_bentoml_ui_path(path) or bentoml_adapter.is_bentoml_ui_path(path + "/"), (
            path
        )
