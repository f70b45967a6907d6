"""Handwritten digits: a small convolutional network (PyTorch) on scikit-learn's 8x8 digit images.

1,797 images of 8x8 pixels with values 0-16, classes 0-9 (``sklearn.datasets.load_digits``, ships with
scikit-learn, no download). Two 3x3 convolutions, a 2x2 pooling and two linear layers, 38k parameters,
trained here in seconds; held-out accuracy ~0.98. It runs on the service's GPU when it has one
(``INFSTACK_CLASSIC__GPUS=1``), on the CPU otherwise.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from services.classic.contract import Log, ModelSpec
from services.classic.training import SEED, TEST_SIZE, Trained, fingerprint, store_name, train_once

WEIGHTS_FILE = "cnn.pt"
SIDE, LEVELS = 8, 16.0
PARAMS: dict[str, Any] = {
    "epochs": 15,
    "batch_size": 64,
    "learning_rate": 3e-3,
    "channels": [16, 32],
    "hidden": 64,
}
SOURCE = "sklearn.datasets.load_digits (8x8 handwritten digits, ships with sklearn)"
Pixel = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=LEVELS)]
ImageRow = Annotated[list[Pixel], Field(min_length=SIDE, max_length=SIDE)]
Image = Annotated[
    list[ImageRow], Field(min_length=SIDE, max_length=SIDE, description="8 rows of 8 pixels, 0 to 16")
]

SPEC = ModelSpec(
    kind="digits",
    api="classify_digits",
    field="images",
    doc="The digit (0-9) in each 8x8 image (rows of pixel values 0-16, as sklearn's load_digits). One "
    "network call per batch, on the GPU when the service has one.",
    default_tag="classic-digits-cnn:latest",
    max_batch_size=256,
    max_latency_ms=1000,
    settings={"max_images": (int, Field(default=64, ge=1, description="Most digit images in one request."))},
)


def network() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    first, second = PARAMS["channels"]
    return nn.Sequential(
        nn.Conv2d(1, first, 3, padding=1), nn.ReLU(), nn.Conv2d(first, second, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(second * (SIDE // 2) ** 2, PARAMS["hidden"]), nn.ReLU(),
        nn.Linear(PARAMS["hidden"], 10),
    )  # fmt: skip


class DigitsClassifier:
    SPEC: ClassVar[ModelSpec] = SPEC

    def __init__(self, net: Any, tag: str = "") -> None:
        import torch

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device).eval()
        self.tag = tag
        self.class_names = [str(d) for d in range(10)]

    @classmethod
    def input_type(cls, settings: Any) -> Any:
        most = settings.classic.max_images
        return Annotated[
            list[Image], Field(min_length=1, max_length=most, description=f"1 to {most} 8x8 images")
        ]

    @classmethod
    def load(cls, stored: Any, settings: Any) -> DigitsClassifier:
        import torch

        net = network()
        net.load_state_dict(torch.load(stored.path_of(WEIGHTS_FILE), map_location="cpu", weights_only=True))
        return cls(net, str(stored.tag))

    def predict_proba(self, images: np.ndarray | list[Any]) -> np.ndarray:
        import torch

        pixels = torch.as_tensor(np.asarray(images, dtype=np.float32) / LEVELS).reshape(-1, 1, SIDE, SIDE)
        with torch.inference_mode():
            proba = torch.softmax(self.net(pixels.to(self.device)), dim=1)
        return np.asarray(proba.cpu().numpy(), dtype=np.float32)

    async def predict_batch(self, rows: list[Any], service: Any) -> np.ndarray:
        return await asyncio.to_thread(self.predict_proba, rows)

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "parameters": sum(p.numel() for p in self.net.parameters())}

    @classmethod
    def ensure_trained(cls, settings: Any, force: bool, log: Log) -> Any:
        import sklearn
        import torch

        def train() -> Trained:
            log("[digits] training a CNN on load_digits")
            model, accuracy, rows = fit(log)
            log(f"[digits] held-out accuracy {accuracy:.3f}")
            metadata = {"accuracy": accuracy, "source": SOURCE, "class_names": model.class_names,
                        "train_rows": rows, "test_size": TEST_SIZE, "seed": SEED, "params": PARAMS}  # fmt: skip
            return metadata, lambda stored: torch.save(
                model.net.cpu().state_dict(), stored.path_of(WEIGHTS_FILE)
            )

        version = fingerprint(PARAMS, SEED, torch.__version__, sklearn.__version__)
        return train_once(
            "digits", f"{store_name(settings.classic.digits_model)}:{version}", force, log, train
        )


def fit(log: Log = print) -> tuple[DigitsClassifier, float, int]:
    """The CNN on 80% of load_digits (stratified, seeded), on the CPU; (model, held-out accuracy, rows)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.images, data.target, test_size=TEST_SIZE, random_state=SEED, stratify=data.target
    )
    net = network()
    optimizer = torch.optim.Adam(net.parameters(), lr=PARAMS["learning_rate"])
    images = torch.as_tensor(np.asarray(x_train, dtype=np.float32) / LEVELS).reshape(-1, 1, SIDE, SIDE)
    labels = torch.as_tensor(y_train, dtype=torch.long)
    order = torch.Generator().manual_seed(SEED)
    for epoch in range(PARAMS["epochs"]):
        shuffled = torch.randperm(len(labels), generator=order)
        for start in range(0, len(labels), PARAMS["batch_size"]):
            batch = shuffled[start : start + PARAMS["batch_size"]]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(images[batch]), labels[batch])
            torch.autograd.backward(loss)
            optimizer.step()
        if (epoch + 1) % 10 == 0:
            log(f"[digits] epoch {epoch + 1}/{PARAMS['epochs']}")
    model = DigitsClassifier(net)
    accuracy = float(np.mean(model.predict_proba(x_test).argmax(axis=1) == y_test))
    return model, accuracy, len(x_train)
