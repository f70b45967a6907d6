"""The classic-ML service under `bentoml serve` (with its EmbeddingCache dependency), over HTTP.

Expected values come from the stored models called directly (joblib / XGBoost, no service code), on
vectors from the reference sentence-transformers model: what "offline prediction" means for a user.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer

from models.train_classic import ensure_models
from scripts.procs import BentoServer, metric_value
from services.classic.tabular import BOOSTER_FILE
from services.classic.text import TEXT_FILE
from services.wire import MODEL_HEADER
from tests.conftest import CLASSIC_TARGET, TABULAR_CLASSES, burst, class_probabilities, classic_env

pytestmark = pytest.mark.integration

FEATURES = load_breast_cancer().data
TOPICS = [
    "Open a TCP connection to the host and port and return a socket.",
    "Return the square root of x as a decimal number.",
    "Wait until the lock is released by another thread.",
    "Extract all members of the tar archive to the directory.",
    "Remove the directory tree rooted at path.",
    "Return the number of days in the given month of the year.",
]


def unique_texts(n: int) -> list[str]:
    """Texts no earlier request has embedded (so the first call is a cache miss)."""
    tag = uuid.uuid4().hex[:8]
    return [f"{TOPICS[i % len(TOPICS)]} (case {tag}-{i})" for i in range(n)]


@pytest.fixture(scope="module", autouse=True)
def overload_server(
    bento_factory: Callable[..., BentoServer], session_dir: Path, classic_models: dict
) -> Iterator[Future[BentoServer]]:
    """A second server, with a 1 ms tabular batching bound, for the overload test. It starts in a thread
    while the main server starts and the other tests run: server start-up is most of this file's time."""
    env = classic_env(
        session_dir / "overload-cache", classic_models, INFSTACK_CLASSIC__TABULAR_MAX_LATENCY_MS="1"
    )
    server = bento_factory(CLASSIC_TARGET, env, "classic-overload", run=False)
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(server.start)
        server.stop()


@pytest.fixture(scope="module")
def offline(classic_models: dict):
    """The stored models loaded with their own libraries, not through services/."""
    text = joblib.load(classic_models["text"].path_of(TEXT_FILE))
    booster = xgb.Booster(model_file=classic_models["tabular"].path_of(BOOSTER_FILE))
    return text, booster


def expected_tabular(booster: xgb.Booster, rows: np.ndarray) -> np.ndarray:
    p = booster.inplace_predict(rows.astype(np.float32))
    return np.column_stack([1 - p, p])


def post(server: BentoServer, api: str, **payload: object) -> httpx.Response:
    return httpx.post(f"{server.url}/{api}", json=payload, timeout=60)


def batches(server: BentoServer, model: str) -> tuple[float, float]:
    """(model calls, calls that carried a single row) so far, from the batch-size histogram."""
    text = httpx.get(f"{server.url}/metrics").text
    count = metric_value(text, "infstack_classic_batch_size_count", model=model) or 0
    ones = metric_value(text, "infstack_classic_batch_size_bucket", model=model, le="1.0") or 0
    return count, ones


def check_predictions(
    response: httpx.Response, classes: list[str], expected: np.ndarray, atol: float
) -> None:
    """One {label, probabilities} per input, probabilities keyed by class name, in request order."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body) == len(expected)
    proba = class_probabilities(body, classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, expected, atol=atol)
    assert [p["label"] for p in body] == [classes[i] for i in expected.argmax(axis=1)]


def test_tabular_one_at_a_time_equals_offline(classic_server, classic_models, offline) -> None:
    for i in (0, 1, 20, 300):
        response = post(classic_server, "predict_tabular", rows=[FEATURES[i].tolist()])
        assert response.headers[MODEL_HEADER] == str(classic_models["tabular"].tag)
        check_predictions(response, TABULAR_CLASSES, expected_tabular(offline[1], FEATURES[i : i + 1]), 1e-6)
    many = post(classic_server, "predict_tabular", rows=FEATURES[:16].tolist())
    check_predictions(many, TABULAR_CLASSES, expected_tabular(offline[1], FEATURES[:16]), atol=1e-6)


def test_tabular_values_beyond_float32_are_answered_as_xgboost_answers_them(classic_server, offline) -> None:
    """Finite JSON numbers past float32's range are valid input; the model computes in float32, where they
    are +-inf, and the numpy walk must answer them as XGBoost does (the fuzz test once got a 500 here)."""
    big = np.finfo(np.float64).max
    rows = np.tile(FEATURES[:1], (16, 1))
    rows[::2, 0], rows[1::2, 3], rows[2::4, 7] = big, -big, big
    with np.errstate(over="ignore"):
        expected = expected_tabular(offline[1], rows)
    response = post(classic_server, "predict_tabular", rows=rows.tolist())
    check_predictions(response, TABULAR_CLASSES, expected, atol=1e-6)


def test_tabular_burst_is_batched_and_equals_offline(classic_server, offline) -> None:
    rows = FEATURES[:64]
    expected = expected_tabular(offline[1], rows)
    for _attempt in range(3):  # the first burst may still be the dispatcher's warm-up
        before = batches(classic_server, "tabular")
        responses = burst(classic_server, "predict_tabular", [{"rows": [r.tolist()]} for r in rows])
        for i, response in enumerate(responses):  # each request gets its own row's answer back
            check_predictions(response, TABULAR_CLASSES, expected[i : i + 1], atol=1e-6)
        after = batches(classic_server, "tabular")
        calls, single = after[0] - before[0], after[1] - before[1]
        if calls < len(rows) and single < calls:
            return
    pytest.fail(f"64 concurrent requests never shared a model call: {calls} calls, {single} of one row")


def test_text_one_at_a_time_and_burst_equal_offline(
    classic_server, offline, reference_model, classic_models
) -> None:
    texts = unique_texts(24)
    classes = [str(c) for c in offline[0].classes_]
    assert len(classes) == 8
    expected = offline[0].predict_proba(reference_model.encode(texts, convert_to_numpy=True))
    for i in range(3):
        response = post(classic_server, "classify_text", texts=[texts[i]])
        assert response.headers[MODEL_HEADER] == str(classic_models["text"].tag)
        check_predictions(response, classes, expected[i : i + 1], atol=1e-4)
    before = batches(classic_server, "text")
    responses = burst(classic_server, "classify_text", [{"texts": [t]} for t in texts[3:]])
    for i, response in enumerate(responses, start=3):
        check_predictions(response, classes, expected[i : i + 1], atol=1e-4)
    after = batches(classic_server, "text")
    assert after[0] - before[0] < 21, "21 concurrent texts should share embedding calls"


def test_topics_are_the_expected_families(classic_server) -> None:
    body = post(classic_server, "classify_text", texts=TOPICS).json()
    assert [p["label"] for p in body[:3]] == ["network", "numbers", "concurrency"]


def test_repeated_texts_hit_the_shared_embedding_cache(classic_server) -> None:
    texts = unique_texts(5)

    def hits() -> float:
        text = httpx.get(f"{classic_server.url}/metrics").text  # the dependency's series are here too
        return metric_value(text, "infstack_cache_lookups_total", cache="embedding", result="hit") or 0

    first = post(classic_server, "classify_text", texts=texts).json()
    before = hits()
    second = post(classic_server, "classify_text", texts=texts).json()
    assert hits() - before == len(texts)
    assert [p["label"] for p in second] == [p["label"] for p in first]
    for again, once in zip(second, first, strict=True):
        assert again["probabilities"] == pytest.approx(once["probabilities"], abs=1e-6)
    metrics = httpx.get(f"{classic_server.url}/metrics").text
    assert (metric_value(metrics, "infstack_classic_embedding_texts_total", source="cache") or 0) >= 5


def row(*head: object, width: int = 30) -> list[object]:
    return [*head, *[1.0] * (width - len(head))]


NAN, INF = float("nan"), float("inf")  # json.dumps writes NaN / Infinity, as lenient clients do
BAD = [
    ("predict_tabular", {"rows": []}, ["rows"], "at least 1 item"),
    ("predict_tabular", {"rows": [row()] * 17}, ["rows"], "at most 16 items"),
    ("predict_tabular", {"rows": [row(width=29)]}, ["rows", 0], "at least 30 items"),
    ("predict_tabular", {"rows": [row(), row(width=31)]}, ["rows", 1], "at most 30 items"),
    ("predict_tabular", {"rows": [row(NAN)]}, ["rows", 0, 0], "finite number"),
    ("predict_tabular", {"rows": [row(1.0, INF)]}, ["rows", 0, 1], "finite number"),
    ("predict_tabular", {"rows": [row(-INF)]}, ["rows", 0, 0], "finite number"),
    ("predict_tabular", {"rows": [row("1.5")]}, ["rows", 0, 0], "valid number"),
    ("predict_tabular", {"rows": [row(True)]}, ["rows", 0, 0], "valid number"),
    ("predict_tabular", {"rows": [row(None)]}, ["rows", 0, 0], "valid number"),
    ("predict_tabular", {"rows": "1, 2, 3"}, ["rows"], "valid array"),
    ("predict_tabular", {}, ["rows"], "Field required"),
    ("classify_text", {"texts": []}, ["texts"], "at least 1 item"),
    ("classify_text", {"texts": ["ok", ""]}, ["texts", 1], "at least 1 character"),
    ("classify_text", {"texts": ["x" * 301]}, ["texts", 0], "at most 300 characters"),
    ("classify_text", {"texts": ["ok", 7]}, ["texts", 1], "valid string"),
    ("classify_text", {"texts": ["t"] * 9}, ["texts"], "at most 8 items"),
]


@pytest.mark.parametrize(("api", "payload", "loc", "needle"), BAD)
def test_bad_input_is_a_400_naming_field_and_limit(classic_server, api, payload, loc, needle) -> None:
    response = httpx.post(
        f"{classic_server.url}/{api}",
        content=json.dumps(payload),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    details = response.json()["detail"]
    assert any(d["loc"] == loc and needle in d["msg"] for d in details), details


def test_a_bad_request_in_a_burst_fails_alone(classic_server, offline) -> None:
    """Validation is per request, before the dispatcher merges rows: batch-mates are unaffected."""
    payloads = [{"rows": [r.tolist()]} for r in FEATURES[:16]]
    payloads.insert(7, {"rows": [row(width=29)]})
    responses = burst(classic_server, "predict_tabular", payloads)
    assert responses.pop(7).status_code == 400
    expected = expected_tabular(offline[1], FEATURES[:16])
    for i, response in enumerate(responses):
        check_predictions(response, TABULAR_CLASSES, expected[i : i + 1], atol=1e-6)


def test_info_states_accuracy_and_source(classic_server) -> None:
    info = post(classic_server, "info").json()
    assert info["text"]["accuracy"] > 0.7 and "stdlib_docstrings.csv" in info["text"]["source"]
    assert info["tabular"]["accuracy"] > 0.9 and "load_breast_cancer" in info["tabular"]["source"]


def test_training_again_reuses_the_stored_models(classic_models) -> None:
    lines: list[str] = []
    again = ensure_models(log=lines.append)
    assert {k: m.tag for k, m in again.items()} == {k: m.tag for k, m in classic_models.items()}
    assert all("reusing" in line for line in lines)


def test_overload_is_a_fast_503_naming_the_bound(overload_server: Future[BentoServer]) -> None:
    """A 1 ms batching bound under a 200-request burst: some requests are shed, none hangs."""
    server = overload_server.result(timeout=240)
    started = time.monotonic()
    responses = burst(server, "predict_tabular", [{"rows": [r.tolist()]} for r in FEATURES[:200]], 30)
    elapsed = time.monotonic() - started
    metrics = httpx.get(f"{server.url}/metrics").text
    server.stop()
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(503) > 0, codes
    assert metric_value(metrics, "infstack_classic_overloaded_total", model="tabular") == codes.count(503)
    assert elapsed < 30
    shed = next(r for r in responses if r.status_code == 503)
    assert shed.json()["max_latency_ms"] == 1 and "overloaded" in shed.json()["error"]
    assert shed.headers["retry-after"] == "1"
