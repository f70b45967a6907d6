"""The third classic model, added through the contract alone: a CNN on 8x8 digits, through the gateway.

Expected answers come from the stored weights run by plain PyTorch in the test process (not services/).
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from scripts.procs import BentoServer, metric_value
from services.wire import MODEL_HEADER
from tests.conftest import class_probabilities

pytestmark = pytest.mark.integration
IMAGES = load_digits().images
CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def offline(classic_models: dict) -> torch.nn.Module:
    from services.classic.digits import WEIGHTS_FILE, network

    net = network()
    net.load_state_dict(torch.load(classic_models["digits"].path_of(WEIGHTS_FILE), weights_only=True))
    return net.eval()


def expected(net: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.softmax(net(torch.as_tensor(images / 16.0, dtype=torch.float32)[:, None]), dim=1).numpy()


def test_digits_through_the_gateway_equal_the_stored_network(
    gateway_server: BentoServer, classic_models: dict, offline: torch.nn.Module
) -> None:
    images = IMAGES[-16:]
    reply = httpx.post(f"{gateway_server.url}/classify_digits", json={"images": images.tolist()}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.headers[MODEL_HEADER] == str(classic_models["digits"].tag)
    proba = class_probabilities(reply.json(), CLASSES)
    np.testing.assert_allclose(proba, expected(offline, images), atol=1e-5)
    labels = [int(p["label"]) for p in reply.json()]
    assert np.mean(np.array(labels) == load_digits().target[-16:]) >= 0.9
    status = httpx.get(f"{gateway_server.url}/status", timeout=30).json()
    assert status["classic"]["digits"]["device"] == "cpu" and status["classic"]["digits"]["accuracy"] > 0.95


@pytest.mark.parametrize(
    ("image", "loc", "needle"),
    [
        (IMAGES[0][:7].tolist(), ["images", 0], "at least 8 items"),
        ([[17.0] * 8] * 8, ["images", 0, 0, 0], "less than or equal to 16"),
        ([["1"] * 8] * 8, ["images", 0, 0, 0], "valid number"),
    ],
)
def test_a_bad_image_is_a_400_naming_the_pixel(
    gateway_server: BentoServer, image: list, loc: list, needle: str
) -> None:
    reply = httpx.post(f"{gateway_server.url}/classify_digits", json={"images": [image]}, timeout=60)
    assert reply.status_code == 400
    assert any(d["loc"] == loc and needle in d["msg"] for d in reply.json()["detail"]), reply.text


def test_concurrent_single_images_share_network_calls(
    gateway_server: BentoServer, offline: torch.nn.Module
) -> None:
    def calls() -> float:
        text = httpx.get(f"{gateway_server.url}/metrics", timeout=30).text
        return metric_value(text, "infstack_classic_batch_size_count", model="digits") or 0.0

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway_server.url, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/classify_digits", json={"images": [IMAGES[i].tolist()]}) for i in range(64))
            )

    before = calls()
    replies = asyncio.run(burst())
    assert [r.status_code for r in replies] == [200] * 64
    got = np.array([class_probabilities(r.json(), CLASSES)[0] for r in replies])
    np.testing.assert_allclose(got, expected(offline, IMAGES[:64]), atol=1e-5)
    assert calls() - before < 64  # adaptive batching merged some of them
