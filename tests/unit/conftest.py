"""Fixtures shared by unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm():  # the real packaged MiniLM (sentence-transformers), loaded once
    from services.embedding.model import load_sentence_model

    return load_sentence_model("all-MiniLM-L6-v2")
