"""The embedded persistent store: one SQLite file in WAL mode.

Chosen over LangChain's ``LocalFileStore`` (one file per key): a batch lookup is one indexed query
instead of N opens, writes of a batch are one transaction, the file survives restarts, and several
worker processes can read and write it at once.
"""

from __future__ import annotations

import sqlite3
import threading
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
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            self._conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                found.update(self._conn.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})", chunk))
        return [found.get(k) for k in keys]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", key_value_pairs
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def mdelete(self, keys: Sequence[str]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in keys])

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        with self._lock:
            if prefix is None:
                rows = self._conn.execute("SELECT key FROM kv").fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT key FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
                ).fetchall()
        for (key,) in rows:
            yield key
