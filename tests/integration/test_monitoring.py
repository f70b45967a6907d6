"""deploy/monitoring against a real Prometheus scraping a real served Bento.

promtool accepts the rules and the config; every dashboard query and every alert's value evaluates on the
live data and returns series (the GPU panels excepted: no GPU here, and their series are absent, not
zero); every rule evaluates without error; and the classic-shedding alert fires once shedding is caused
for real (a ClassicML server with a 1 ms batching bound, under a burst).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from scripts.procs import ROOT, BentoServer, free_port, stop_process_group, wait_until
from tests.conftest import CLASSIC_TARGET, TINY_LLM, classic_env

pytestmark = pytest.mark.integration
MONITORING = ROOT / "deploy" / "monitoring"
GPU_ONLY = "GPU only"


def promtool(*args: str) -> str:
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def dashboard_queries(gpu: bool = False) -> list[tuple[str, str]]:
    panels = json.loads((MONITORING / "grafana-dashboard.json").read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]
            if gpu or not p.get("description", "").startswith(GPU_ONLY)]  # fmt: skip


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def shedding_server(
    bento_factory: Callable[..., BentoServer], session_dir: Path, classic_models: dict
) -> BentoServer:
    env = classic_env(
        session_dir / "monitoring-cache", classic_models, INFSTACK_CLASSIC__TABULAR_MAX_LATENCY_MS="1"
    )
    return bento_factory(CLASSIC_TARGET, env, "classic-monitoring")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, gateway_server: BentoServer,
               shedding_server: BentoServer) -> Iterator[str]:  # fmt: skip
    """deploy/monitoring/prometheus.yml and alerts.yml, pointed at the test servers, scraping every 2 s."""
    workdir = tmp_path_factory.mktemp("prometheus")
    shutil.copy(MONITORING / "alerts.yml", workdir / "alerts.yml")
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"}
    job = config["scrape_configs"][0]
    job["static_configs"] = [
        {"targets": [f"127.0.0.1:{gateway_server.port}", f"127.0.0.1:{shedding_server.port}"]}
    ]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool("check", "config", str(workdir / "prometheus.yml"))
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(workdir / "prometheus.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 60, "prometheus", proc)
        yield url
    finally:
        stop_process_group(proc, grace_s=10)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", (expr, reply)
    return reply["data"]["result"]  # type: ignore[no-any-return]


def traffic(gateway: str, shedding: str) -> int:
    """Every kind of request through the Bento, then a burst the 1 ms-bound server must shed from."""
    rows = load_breast_cancer().data[:4].tolist()
    stamp = time.time()
    with httpx.Client(base_url=gateway, timeout=60) as client:
        for i in range(3):
            completion = {
                "model": TINY_LLM,
                "prompt": f"monitor {stamp} {i}",
                "max_tokens": 8,
                "temperature": 0,
            }
            assert client.post("/v1/completions", json=completion).status_code == 200
            assert client.post("/embed", json={"texts": [f"monitor {stamp} {i}"]}).status_code == 200
            assert (
                client.post("/classify_text", json={"texts": [f"Open the file {stamp} {i}"]}).status_code
                == 200
            )
            assert client.post("/predict_tabular", json={"rows": rows}).status_code == 200

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=shedding, timeout=60) as client:
            replies = await asyncio.gather(
                *(client.post("/predict_tabular", json={"rows": rows}) for _ in range(200))
            )
        return [r.status_code for r in replies]

    return asyncio.run(burst()).count(503)


def test_promtool_accepts_the_rules_and_the_config() -> None:
    assert "SUCCESS: 9 rules found" in promtool("check", "rules", str(MONITORING / "alerts.yml"))
    promtool("check", "config", str(MONITORING / "prometheus.yml"))


def test_dashboard_and_alerts_evaluate_on_the_live_bento_and_shedding_fires_its_alert(
    prometheus: str, gateway_server: BentoServer, shedding_server: BentoServer
) -> None:
    # As in any deployment, Prometheus has seen the shed counter (at 0) before the burst: a series that is
    # new when first scraped has no increase yet. The shedding server's own series: the gateway's ClassicML
    # exports one too, and a first scrape of that one alone let the burst land before (seen in CI).
    shed_series = (
        f'infstack_classic_overloaded_total{{model="tabular",instance="127.0.0.1:{shedding_server.port}"}}'
    )
    wait_until(lambda: query(prometheus, shed_series), 30, "a first scrape of the shedding server")
    shed = traffic(gateway_server.url, shedding_server.url)
    assert shed > 0, "the 1 ms bound shed nothing"

    def empty() -> list[tuple[str, str]]:
        return [(title, expr) for title, expr in dashboard_queries() if not query(prometheus, expr)]

    with contextlib.suppress(TimeoutError):  # rates need two scrapes after the traffic
        wait_until(lambda: not empty(), 60, "dashboard series")
    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up", "up"], [t.get("lastError") for t in targets]
    assert empty() == [], "dashboard queries without series"
    gpu_series = [expr for _, expr in dashboard_queries(gpu=True) if expr.startswith("infstack_gpu_")]
    assert gpu_series and all(query(prometheus, expr) == [] for expr in gpu_series)  # absent, not zero

    values = {rule["alert"]: rule["annotations"]["value_query"] for rule in alert_rules()}
    missing = [
        name for name, expr in values.items() if "infstack_gpu_" not in expr and not query(prometheus, expr)
    ]
    assert missing == [], f"alert values without series: {missing}"

    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    unhealthy = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r["health"] != "ok"]
    assert unhealthy == []

    def shedding_alert_fires() -> bool:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return any(a["labels"]["alertname"] == "ClassicRequestsShed" and a["state"] == "firing"
                   and a["labels"].get("model") == "tabular" for a in alerts)  # fmt: skip

    try:
        wait_until(shedding_alert_fires, 30, "the ClassicRequestsShed alert")
    except TimeoutError:  # say what Prometheus had, so a failure here can be told from a slow scrape
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        series = query(prometheus, 'infstack_classic_overloaded_total{model="tabular"}')
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        raise AssertionError(f"no firing ClassicRequestsShed after {shed} sheds; alerts {alerts}; shed series "
                             f"{series}; targets {[(t['health'], t.get('lastError')) for t in targets]}") from None  # fmt: skip
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"} == {"ClassicRequestsShed"}
