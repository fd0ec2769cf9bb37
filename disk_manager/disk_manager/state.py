"""Pins (leases with a time-to-live) and recorded last use, shared by every process on the volume.

A model being served or trained must not be evicted by another process's EnsureFree, so
pins live in a file beside the cache, not in memory, and every read-modify-write holds an
exclusive flock. A lease expires on its own, so a crashed holder cannot pin a model forever.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Lease:
    """A pin on one entry until ``expires_at`` (epoch seconds)."""

    lease_id: str
    key: str
    holder: str
    expires_at: float


class StateStore:
    """``state.json`` under ``directory``, guarded by ``state.lock``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state.json"
        self.lock_path = directory / "state.lock"

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Hold the lock, yield the state for reading or changing, and write it back atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._read()
                before = json.dumps(state, sort_keys=True)
                yield state
                if json.dumps(state, sort_keys=True) != before:
                    self._write(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        data.setdefault("leases", {})
        data.setdefault("last_used", {})
        return data

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".state.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)

    def pin(self, key: str, ttl_s: float, holder: str) -> Lease:
        """Pin ``key`` for ``ttl_s`` seconds; several holders may pin the same entry."""
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        lease = Lease(uuid.uuid4().hex, key, holder, time.time() + ttl_s)
        with self.locked() as state:
            state["leases"][lease.lease_id] = asdict(lease)
        return lease

    def unpin(self, lease_id: str) -> bool:
        """Release a lease; False when it did not exist (already released or expired)."""
        with self.locked() as state:
            return state["leases"].pop(lease_id, None) is not None

    def active_leases(self, now: float | None = None) -> list[Lease]:
        """Leases not yet expired; expired ones are dropped from the file."""
        now = time.time() if now is None else now
        with self.locked() as state:
            expired = [lid for lid, lease in state["leases"].items() if lease["expires_at"] <= now]
            for lid in expired:
                del state["leases"][lid]
            return [Lease(**lease) for lease in state["leases"].values()]

    def pinned_keys(self, now: float | None = None) -> set[str]:
        """Keys held by at least one live lease."""
        return {lease.key for lease in self.active_leases(now)}

    def touch(self, key: str, when: float | None = None) -> None:
        """Record a use of ``key`` (more reliable than atime, which many mounts do not update)."""
        with self.locked() as state:
            state["last_used"][key] = time.time() if when is None else when

    def last_used(self) -> dict[str, float]:
        """Recorded last use per key."""
        with self.locked() as state:
            return dict(state["last_used"])

    def forget(self, key: str) -> None:
        """Drop what is recorded about an entry that no longer exists."""
        with self.locked() as state:
            state["last_used"].pop(key, None)
