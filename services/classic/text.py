"""Text topic classifier: logistic regression over all-MiniLM-L6-v2 embeddings of Python docstrings.

Trained on ``models/data/stdlib_docstrings.csv``: 2,107 first paragraphs of CPython 3.11 standard-library
docstrings, each labeled with its module's family (text, files, network, concurrency, formats, numbers,
time, devtools); built by ``python -m models.build_docstring_dataset`` from the interpreter's own modules.
The vectors are un-normalized, exactly what the embedding-cache service returns by default: a batch makes
one request to that service, so a text any client has embedded before costs a cache lookup, not a
transformer pass.
"""

from __future__ import annotations

import asyncio
import csv
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from services import metrics
from services.classic.contract import Log, ModelSpec
from services.classic.training import SEED, TEST_SIZE, Trained, fingerprint, sha256, store_name, train_once
from services.wire import from_base64

TEXT_FILE = "classifier.joblib"
PARAMS: dict[str, Any] = {"C": 3.0, "max_iter": 3000}
SOURCE = (
    "models/data/stdlib_docstrings.csv: first paragraphs of CPython 3.11 stdlib docstrings labeled by "
    "module family (models/build_docstring_dataset.py)"
)

SPEC = ModelSpec(
    kind="text",
    api="classify_text",
    field="texts",
    doc="The topic family (text, files, network, ...) of each text. One embedding request and one "
    "classifier call per batch.",
    default_tag="classic-text-topic:latest",
    max_batch_size=64,
    max_latency_ms=5000,
    dependency="embedding_cache",
    settings={
        "max_texts": (int, Field(default=64, ge=1, description="Most texts in one request.")),
        "max_text_chars": (
            int,
            Field(
                default=2000,
                ge=1,
                description="Longest text, in characters (INFSTACK_EMBEDDING__MAX_TEXT_CHARS applies too, if lower).",
            ),
        ),
    },
)


class TextClassifier:
    SPEC: ClassVar[ModelSpec] = SPEC

    def __init__(self, estimator: Any, tag: str = "") -> None:
        self.estimator = estimator
        self.tag = tag
        self.class_names = [str(c) for c in estimator.classes_]

    @classmethod
    def input_type(cls, settings: Any) -> Any:
        """At most the embedding service's own text length too: a longer text got its 400 in the middle of
        a batch, failing every request of that batch (found by the schemathesis fuzz)."""
        from services.embedding.schemas import bounded_texts

        longest = min(settings.classic.max_text_chars, settings.embedding.max_text_chars)
        return bounded_texts(settings.classic.max_texts, longest)

    @classmethod
    def load(cls, stored: Any, settings: Any) -> TextClassifier:
        import joblib

        model = cls(joblib.load(stored.path_of(TEXT_FILE)), str(stored.tag))
        trained_on = stored.info.metadata.get("embedding_model")
        if trained_on != settings.embedding.model_id:
            raise ValueError(
                f"{model.tag} was trained on {trained_on} vectors but the embedding service "
                f"serves {settings.embedding.model_id} (INFSTACK_EMBEDDING__MODEL_ID)"
            )
        return model

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(vectors), dtype=np.float32)

    async def predict_batch(self, rows: list[Any], service: Any) -> np.ndarray:
        import aiohttp
        from bentoml.exceptions import BentoMLException

        from services.classic.shedding import DependencyUnavailable
        from services.relay import UpstreamUnavailable

        max_texts = service.settings.embedding.max_texts
        upstream = service.embedding_upstream
        embed = service.embedding.to_async.embed if upstream is None else relay_embed(upstream)
        try:
            vectors = await fetch_embeddings(embed, rows, max_texts)
        except (aiohttp.ClientError, UpstreamUnavailable) as exc:  # not answering at all
            raise DependencyUnavailable(f"embedding_cache: {exc}") from exc
        except BentoMLException as exc:
            if exc.error_code >= HTTPStatus.INTERNAL_SERVER_ERROR:  # its 503 is not our shed
                raise DependencyUnavailable(f"embedding_cache: {exc}") from exc
            raise
        return self.predict_proba(vectors)

    def describe(self) -> dict[str, Any]:
        return {}

    @classmethod
    def ensure_trained(cls, settings: Any, force: bool, log: Log) -> Any:
        import joblib
        import sklearn

        from models.build_docstring_dataset import DATA_PATH  # training only: not part of the Bento

        embedding_model = settings.embedding.model_id
        texts, labels = load_dataset(DATA_PATH)

        def train() -> Trained:
            log(f"[text] loading {embedding_model}")
            from services.embedding.model import load_sentence_model  # imports torch: only when training

            encoder = load_sentence_model(embedding_model)
            chunks = []
            for start in range(0, len(texts), 256):
                chunks.append(
                    encoder.encode(texts[start : start + 256], batch_size=64, convert_to_numpy=True)
                )
                log(f"[text] embedded {min(start + 256, len(texts))}/{len(texts)} texts")
            model, accuracy = fit(np.concatenate(chunks).astype(np.float32), labels)
            log(f"[text] {len(model.class_names)} classes, held-out accuracy {accuracy:.3f}")
            metadata = {
                "accuracy": accuracy, "source": SOURCE, "embedding_model": embedding_model, "normalized": False,
                "class_names": model.class_names, "rows": len(texts), "test_size": TEST_SIZE, "seed": SEED,
                "params": PARAMS,
            }  # fmt: skip
            return metadata, lambda stored: joblib.dump(model.estimator, stored.path_of(TEXT_FILE))

        version = fingerprint(sha256(DATA_PATH), PARAMS, SEED, embedding_model, sklearn.__version__)
        return train_once("text", f"{store_name(settings.classic.text_model)}:{version}", force, log, train)


def load_dataset(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def fit(vectors: np.ndarray, labels: list[str]) -> tuple[TextClassifier, float]:
    """Fit on 80% (stratified, seeded); accuracy on the held-out 20% through the serving code path."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        vectors, labels, test_size=TEST_SIZE, random_state=SEED, stratify=labels
    )
    model = TextClassifier(LogisticRegression(random_state=SEED, **PARAMS).fit(x_train, y_train))
    predicted = np.asarray(model.class_names)[model.predict_proba(x_test).argmax(axis=1)]
    return model, float(np.mean(predicted == np.asarray(y_test)))


async def fetch_embeddings(embed: Any, texts: list[str], max_texts: int) -> np.ndarray:
    """Vectors from the embedding-cache service, in chunks it accepts; counts its cache hits.

    ``base64`` carries float32 bytes: the same values as JSON floats, without the float formatting.
    """
    chunks = [texts[i : i + max_texts] for i in range(0, len(texts), max_texts)]
    replies = await asyncio.gather(*(embed(texts=c, encoding_format="base64") for c in chunks))
    hits = sum(int(_field(r, "cache_hits")) for r in replies)
    metrics.CLASSIC_EMBEDDING_TEXTS.labels("cache").inc(hits)
    metrics.CLASSIC_EMBEDDING_TEXTS.labels("model").inc(len(texts) - hits)
    return np.concatenate([from_base64(_field(r, "embeddings")) for r in replies])


def relay_embed(upstream: Any) -> Any:
    """``embed`` through the project's relay (``/embed``, JSON in, base64 vectors out): the same call as
    BentoML's dependency client, which built request and reply models around it and cost the text API
    ~2 ms of CPU per batch more (2-core CPU). An error status raises what that client raised."""
    from bentoml.exceptions import BentoMLException

    async def embed(texts: list[str], encoding_format: str) -> Any:
        status, answer = await upstream.post_json(
            "/embed", {"texts": texts, "encoding_format": encoding_format}
        )
        if status != HTTPStatus.OK:
            raise BentoMLException(
                f"embedding_cache answered {status}: {answer}", error_code=HTTPStatus(status)
            )
        return answer

    return embed


def _field(reply: Any, name: str) -> Any:
    # The service client returns the response model, or a dict where it cannot rebuild the model.
    return reply[name] if isinstance(reply, dict) else getattr(reply, name)
