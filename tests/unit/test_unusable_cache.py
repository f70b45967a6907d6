"""A cache directory that cannot be opened or fills up: served without the cache, one log line, a metric."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.cache.disk import SqliteStore
from services.cache.store import FailSoftStore, open_store
from services.settings import CacheSettings


def up(cache: str) -> float | None:
    return REGISTRY.get_sample_value("infstack_cache_backend_up", {"cache": cache, "backend": "disk"})


def test_an_unopenable_directory_serves_without_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    with caplog.at_level("WARNING", logger="services.cache.store"):
        store = open_store(CacheSettings(disk_path=blocker / "cache.sqlite3"), cache="unopenable")
        assert store.mget(["a", "b"]) == [None, None]
        store.mset([("a", b"1")])  # dropped, no exception
        assert store.ping() is False
    assert not store.is_up and up("unopenable") == 0
    assert len(caplog.records) == 1 and "serving without it" in caplog.records[0].getMessage()


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs: a cache directory that fills up for real."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)  # detached even while a file is open


def test_a_full_directory_drops_writes_and_keeps_serving(tiny_filesystem: Path) -> None:
    store = FailSoftStore(SqliteStore(tiny_filesystem / "cache.sqlite3"), "full-disk", retry_interval_s=60)
    for i in range(64):  # 64 x 16 KiB > 128 KiB
        store.mset([(f"k{i}", bytes(16 * 1024))])
    assert not store.is_up and up("full-disk") == 0
    assert store.mget(["k0", "k63"]) == [None, None]  # skipped while down: misses, no error
