"""An on-disk response cache for world-model calls (SQLite), with a replay mode.

Key: sha256 of the canonical JSON of ``[backend name, model, messages, sampling parameters]``, so a
response is reused only for the very same request. Value: the raw completion text (unparsed, so a
replay reproduces parse failures and parse retries exactly as they happened).

Safe under concurrency: one connection per cache object guarded by a lock (threads, and coroutines
of one event loop), SQLite WAL journal with a busy timeout (several processes sharing one folder).
Writes are ``INSERT OR IGNORE``: the first response stored for a key stays.

Modes:
    ``read_write`` (default): look up, and store every new response.
    ``replay``: look up only; a miss raises a non-retryable :class:`~simrl.wm.backend.BackendError`,
        so a replayed run never calls a model (the environment records that step as an env failure).
    ``off``: no lookups, no writes, no file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

from simrl.errors import SimrlError
from simrl.wm.backend import BackendError, Sampling

CacheMode = Literal["read_write", "replay", "off"]
MODES: tuple[str, ...] = ("read_write", "replay", "off")
FILE_NAME = "responses.sqlite"


def cache_key(backend: str, model: str, messages: list[dict[str, Any]], sampling: Sampling) -> str:
    """sha256 hex digest of the request (backend, model, messages, sampling parameters)."""
    payload = json.dumps([backend, model, messages, sampling.key_fields()], sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """World-model responses on disk, keyed by :func:`cache_key`.

    Args:
        path: a folder (the database is ``<path>/responses.sqlite``) or a ``.sqlite`` file; unused
            when ``mode`` is ``off``.
        mode: ``read_write``, ``replay`` or ``off`` (see the module docstring).

    Attributes:
        hits, misses: lookups answered / not answered since this object was made (``off``: 0, 0).

    Raises:
        SimrlError: unknown mode; ``replay`` of a cache that does not exist; an unusable file.
    """

    def __init__(self, path: str | Path | None = None, mode: CacheMode = "read_write") -> None:
        if mode not in MODES:
            raise SimrlError(f"cache mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.hits, self.misses = mode, 0, 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.path: Path | None = None
        if mode == "off":
            return
        if path is None:
            raise SimrlError(f"cache mode {mode!r} needs a path (a folder or a .sqlite file)")
        path = Path(path)
        self.path = path if path.suffix in (".sqlite", ".db") else path / FILE_NAME
        if mode == "replay" and not self.path.is_file():
            raise SimrlError(f"--wm-replay: no response cache at {self.path}; record one first (without replay)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect(self.path)
        except (OSError, sqlite3.Error) as err:
            raise SimrlError(f"cannot open the world-model response cache {self.path}: {err}") from None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, backend TEXT, model TEXT, "
                     "response TEXT NOT NULL, created REAL)")
        return conn

    @classmethod
    def off(cls) -> ResponseCache:
        """A cache that never stores anything."""
        return cls(None, "off")

    def get(self, key: str) -> str | None:
        """The stored response for ``key``, or None (``off``: always None, not counted).

        Raises:
            BackendError: ``replay`` mode and no response is stored (``retryable=False``).
        """
        if self._conn is None:
            return None
        with self._lock:
            row = self._conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
        if row is None and self.mode == "replay":
            raise BackendError(f"replay mode: no cached world-model response for request {key[:16]} in "
                               f"{self.path}; run once without --wm-replay to record it", retryable=False)
        return None if row is None else row[0]

    def put(self, key: str, response: str, backend: str = "", model: str = "") -> None:
        """Store ``response`` under ``key`` (``read_write`` only; a key already stored is kept)."""
        if self._conn is None or self.mode != "read_write":
            return
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?)",
                               (key, backend, model, response, time.time()))

    def __len__(self) -> int:
        if self._conn is None:
            return 0
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        """``{"mode", "path", "hits", "misses"}`` (JSON-ready)."""
        return {"mode": self.mode, "path": str(self.path) if self.path else None, "hits": self.hits,
                "misses": self.misses}

    def close(self) -> None:
        """Close the database (idempotent); later lookups behave like ``off``."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
