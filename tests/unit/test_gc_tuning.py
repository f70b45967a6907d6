"""services/gc_tuning.py: what a worker's collector looks like once it has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.gc_tuning import settle_gc, settle_gc_on_start
from services.settings import get_settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_gc_freezes_start_up_objects_and_sets_the_thresholds(restored_gc: None) -> None:
    built_at_start = [object() for _ in range(10)]  # noqa: F841  (alive through the freeze)
    settle_gc((12_345, 7, 3))
    assert gc.get_threshold() == (12_345, 7, 3)
    assert gc.get_freeze_count() >= 10  # what start-up left is out of every later collection
    assert gc.isenabled()  # cycles are still collected


def test_the_start_up_hook_applies_the_process_settings(restored_gc: None) -> None:
    settle_gc_on_start(object())
    assert gc.get_threshold() == get_settings().process.gc_thresholds
    assert get_settings().process.gc_thresholds[0] > 700  # rarer than CPython's default
