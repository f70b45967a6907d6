"""ClassicSettings: every knob of the classic-ML service comes from INFSTACK_CLASSIC__* variables."""

from __future__ import annotations

import pytest

from services.settings import load_settings


def test_defaults_batch_and_bound_each_model(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_settings().classic
    assert config.batching is True
    assert config.text_model == "classic-text-topic:latest"
    assert config.tabular_max_batch_size > 1 and config.tabular_max_latency_ms > 0


def test_nested_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFSTACK_CLASSIC__BATCHING", "false")
    monkeypatch.setenv("INFSTACK_CLASSIC__TABULAR_MAX_LATENCY_MS", "5")
    config = load_settings().classic
    assert (config.batching, config.tabular_max_latency_ms) == (False, 5)
