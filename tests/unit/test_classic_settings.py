"""ClassicSettings: every knob of the classic-ML service comes from INFSTACK_CLASSIC__* variables."""

from __future__ import annotations

import pytest

from services.settings import SettingsError, load_settings


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


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # BentoML refuses max_batch_size 1 at import; settings say so first, by variable name.
        (
            "INFSTACK_CLASSIC__TABULAR_MAX_BATCH_SIZE",
            "1",
            "INFSTACK_CLASSIC__TABULAR_MAX_BATCH_SIZE: Input should be",
        ),
        ("INFSTACK_CLASSIC__MAX_ROWS", "0", "INFSTACK_CLASSIC__MAX_ROWS: Input should be greater"),
        ("INFSTACK_CLASSIC__MAX_LATENCY_MS", "5", "INFSTACK_CLASSIC__MAX_LATENCY_MS: Extra inputs"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()
