"""A crash-safe on-disk key-value store (SQLite), for answers and for embeddings.

Every `put` is its own committed transaction, so what was stored before a crash, a kill -9
or a power cut is there on the next run, and a half-written entry never is: SQLite's
journal gives that atomicity, we do not hand-roll it. Keys are SHA-256 digests of canonical
JSON, so any JSON-able description of "what was asked" can be a key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


def cache_key(parts: Any) -> str:
    """A stable digest of a JSON-able value (dict keys sorted, no whitespace)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class DiskCache:
    """key (str) -> value (bytes), in one table of one SQLite file; safe across threads."""

    def __init__(self, path: Path | str, table: str = "entries") -> None:
        if not table.isidentifier():
            raise ValueError(f"table name must be an identifier, got {table!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table = table
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        # WAL: readers never block the writer; synchronous=FULL: a commit is on disk.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._db:
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
            )

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(f"SELECT value FROM {self.table} WHERE key = ?", (key,))
            found = row.fetchone()
        return None if found is None else bytes(found[0])

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The stored values of those keys that are stored."""
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite caps the number of parameters
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM {self.table} WHERE key IN ({marks})", chunk
                )
                found.update((key, bytes(value)) for key, value in rows)
        return found

    def put(self, key: str, value: bytes) -> None:
        """Store and commit at once (write-through)."""
        with self._lock, self._db:
            self._db.execute(
                f"INSERT OR REPLACE INTO {self.table} (key, value) VALUES (?, ?)", (key, value)
            )

    def put_many(self, items: dict[str, bytes]) -> None:
        """Store several entries in one transaction: all of them or none."""
        with self._lock, self._db:
            self._db.executemany(
                f"INSERT OR REPLACE INTO {self.table} (key, value) VALUES (?, ?)", items.items()
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> DiskCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
