"""A LangChain ``Embeddings`` that calls the embedding-cache service over HTTP.

A LangChain app gets the service's shared cache and batching by passing
``InferenceStackEmbeddings(base_url=...)`` wherever it takes an embedder.
"""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, PrivateAttr

from services.wire import from_base64


class InferenceStackEmbeddings(BaseModel, Embeddings):
    base_url: str = "http://127.0.0.1:3000"
    route: str = "/embed"
    normalize: bool = False
    chunk_size: int = 256  # texts per HTTP request; keep <= the service's max_texts
    timeout_s: float = 60.0
    headers: dict[str, str] = {}

    model_config = ConfigDict(extra="forbid")
    _client: httpx.Client | None = PrivateAttr(default=None)
    _aclient: httpx.AsyncClient | None = PrivateAttr(default=None)

    def _payload(self, texts: list[str]) -> dict[str, Any]:
        return {"texts": texts, "normalize": self.normalize, "encoding_format": "base64"}

    @staticmethod
    def _vectors(response: httpx.Response) -> list[list[float]]:
        response.raise_for_status()
        vectors: list[list[float]] = from_base64(response.json()["embeddings"]).tolist()
        return vectors

    def _chunks(self, texts: list[str]) -> list[list[str]]:
        return [texts[i : i + self.chunk_size] for i in range(0, len(texts), self.chunk_size)]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=self.timeout_s, headers=self.headers)
        out: list[list[float]] = []
        for chunk in self._chunks(texts):
            out.extend(self._vectors(self._client.post(self.route, json=self._payload(chunk))))
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(
                base_url=self.base_url, timeout=self.timeout_s, headers=self.headers
            )
        out: list[list[float]] = []
        for chunk in self._chunks(texts):
            out.extend(self._vectors(await self._aclient.post(self.route, json=self._payload(chunk))))
        return out

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
