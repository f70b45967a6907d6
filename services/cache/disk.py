"""The embedded persistent store: one SQLite file in WAL mode.

Chosen over LangChain's ``LocalFileStore`` (one file per key): a batch lookup is one indexed query
instead of N opens, writes of a batch are one transaction, the file survives restarts, and several
worker processes can read and write it at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from langchain_core.stores import ByteStore as LangChainByteStore

# SQLite caps bound parameters per statement (32766 on current builds); stay well below.
_CHUNK = 900


class SqliteStore(LangChainByteStore):
    backend = "disk"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Two connections: in WAL mode a reader never waits for a writer, so a lookup on the request
        # path is not held up by a commit (or a checkpoint) running on the cache-writer thread.
        self._writer, self._write_lock = self._connect(), threading.Lock()
        with self._write_lock:
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            self._writer.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            self._writer.execute(
                "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires REAL NOT NULL)"
            )
        self._reader, self._read_lock = self._connect(), threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        found: dict[str, bytes] = {}
        with self._read_lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                found.update(self._reader.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})", chunk))
        return [found.get(k) for k in keys]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        with self._write_lock:
            self._writer.execute("BEGIN")
            try:
                self._writer.executemany(
                    "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", key_value_pairs
                )
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    def mdelete(self, keys: Sequence[str]) -> None:
        with self._write_lock:
            self._writer.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in keys])

    # --- claims (services/cache/store.py ClaimStore): expiry is wall-clock time, shared by processes ---
    def claim(self, key: str, ttl_s: float) -> bool:
        now = time.time()
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                self._writer.execute("DELETE FROM claims WHERE key = ? AND expires < ?", (key, now))
                taken = self._writer.execute(
                    "INSERT OR IGNORE INTO claims (key, expires) VALUES (?, ?)", (key, now + ttl_s)
                ).rowcount
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")
        return taken == 1

    def extend(self, key: str, ttl_s: float) -> None:
        with self._write_lock:
            self._writer.execute(
                "INSERT OR REPLACE INTO claims (key, expires) VALUES (?, ?)", (key, time.time() + ttl_s)
            )

    def is_claimed(self, key: str) -> bool:
        with self._read_lock:
            row = self._reader.execute("SELECT expires FROM claims WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] >= time.time()

    def release(self, key: str) -> None:
        with self._write_lock:
            self._writer.execute("DELETE FROM claims WHERE key = ?", (key,))

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        with self._read_lock:
            if prefix is None:
                rows = self._reader.execute("SELECT key FROM kv").fetchall()
            else:
                rows = self._reader.execute(
                    "SELECT key FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
                ).fetchall()
        for (key,) in rows:
            yield key
