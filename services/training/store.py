"""The durable job store: SQLite under the data home (``jobs.db``), shared by the service and its worker.

WAL mode lets the worker append events while the service streams them; every write is one
transaction, so a crash leaves either the old row or the new one.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talklike.common.errors import InvalidArgument, NotFound

STATES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
FINISHED = frozenset({"succeeded", "failed", "cancelled"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    backend TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    train_loss REAL NOT NULL DEFAULT 0,
    eval_loss REAL NOT NULL DEFAULT 0,
    error_code TEXT NOT NULL DEFAULT '',
    error_message TEXT NOT NULL DEFAULT '',
    adapter_path TEXT NOT NULL DEFAULT '',
    fine_tuned_model TEXT NOT NULL DEFAULT '',
    external_id TEXT NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at REAL NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    data_json TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""


@dataclass
class JobRecord:
    """A row of ``jobs``."""

    id: str
    state: str
    backend: str
    spec: dict[str, Any]
    step: int = 0
    total_steps: int = 0
    train_loss: float = 0.0
    eval_loss: float = 0.0
    error_code: str = ""
    error_message: str = ""
    adapter_path: str = ""
    fine_tuned_model: str = ""
    external_id: str = ""
    cancel_requested: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class EventRecord:
    """A row of ``events``."""

    job_id: str
    seq: int
    created_at: float
    kind: str
    state: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class JobStore:
    """Jobs and their events in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def create(self, backend: str, spec: dict[str, Any]) -> JobRecord:
        now = time.time()
        job = JobRecord(
            id=f"job-{uuid.uuid4().hex[:12]}",
            state="validating_files",
            backend=backend,
            spec=spec,
            created_at=now,
            updated_at=now,
        )
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, state, backend, spec_json, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (job.id, job.state, backend, json.dumps(spec), now, now),
            )
        self.add_event(
            job.id, "state", "validating_files", "job created; validating the dataset and the settings"
        )
        return job

    def get(self, job_id: str) -> JobRecord:
        if not job_id.strip():
            raise InvalidArgument(
                "job_id", "must not be empty: give a job id such as job-1a2b3c4d (ListJobs lists them)"
            )
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound("job", job_id, "`talklike jobs list` shows the jobs")
        return _job(row)

    def recent(self, limit: int = 50, states: tuple[str, ...] = ()) -> list[JobRecord]:
        query = "SELECT * FROM jobs"
        args: list[Any] = []
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
            args.extend(states)
        query += " ORDER BY created_at DESC, id LIMIT ?"
        args.append(limit)
        with self._connect() as db:
            return [_job(r) for r in db.execute(query, args).fetchall()]

    def oldest(self, state: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY created_at, id LIMIT 1", (state,)
            ).fetchone()
        return _job(row) if row else None

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", [*fields.values(), job_id])
        return self.get(job_id)

    def set_state(self, job_id: str, state: str, message: str, **fields: Any) -> JobRecord:
        """Change state and record it as an event in one transaction, so no reader sees one without the other."""
        fields.update(state=state, updated_at=time.time())
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", [*fields.values(), job_id])
            self._insert_event(db, job_id, "error" if state == "failed" else "state", state, message, {})
            db.execute("COMMIT")
        return self.get(job_id)

    def add_event(self, job_id: str, kind: str, state: str, message: str, **data: Any) -> None:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            self._insert_event(db, job_id, kind, state, message, data)
            db.execute("COMMIT")

    @staticmethod
    def _insert_event(
        db: sqlite3.Connection, job_id: str, kind: str, state: str, message: str, data: dict[str, Any]
    ) -> None:
        seq = db.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?", (job_id,)
        ).fetchone()[0]
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job_id, seq, time.time(), kind, state, message, json.dumps(data)),
        )

    def events(self, job_id: str, after: int = 0) -> list[EventRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, after)
            ).fetchall()
        return [
            EventRecord(
                r["job_id"],
                r["seq"],
                r["created_at"],
                r["kind"],
                r["state"],
                r["message"],
                json.loads(r["data_json"]),
            )
            for r in rows
        ]


def _job(row: sqlite3.Row) -> JobRecord:
    data = dict(row)
    data["spec"] = json.loads(data.pop("spec_json"))
    data["cancel_requested"] = bool(data["cancel_requested"])
    return JobRecord(**data)
