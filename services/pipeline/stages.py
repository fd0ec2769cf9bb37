"""Resumable stages: a stage whose inputs and settings have not changed is skipped.

Each stage's fingerprint (a hash of its settings and of the files it reads) and outputs are
recorded in ``<out>/pipeline.json`` when it finishes; a rerun compares fingerprints, so a
changed dataset retrains while an unchanged one reuses the adapter.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talklike.common.paths import atomic_write_text


class StageFailed(Exception):
    """A stage could not finish: which one, and why, in a sentence."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"stage {stage!r} failed: {reason}")
        self.stage = stage
        self.reason = reason


def describe(exc: Exception) -> str:
    """One line for a failure: a gRPC error by its status and the service's message."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {details()}"
    return f"{exc.__class__.__name__}: {exc}"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(inputs: dict[str, Any]) -> str:
    """Hash of settings; Path values are hashed by content (a missing file hashes as missing)."""

    def norm(value: Any) -> Any:
        if isinstance(value, Path):
            return {"file": str(value), "sha256": file_digest(value) if value.is_file() else "missing"}
        if isinstance(value, dict):
            return {k: norm(v) for k, v in sorted(value.items())}
        if isinstance(value, list | tuple):
            return [norm(v) for v in value]
        return value

    return hashlib.sha256(json.dumps(norm(inputs), sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageRunner:
    """Runs stages in order against the manifest in ``out``."""

    out: Path
    announce: Callable[[str, str], None]

    @property
    def manifest_path(self) -> Path:
        return self.out / "pipeline.json"

    def _manifest(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.manifest_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}

    def run(
        self, name: str, inputs: dict[str, Any], work: Callable[[], dict[str, Any]], always: bool = False
    ) -> dict[str, Any]:
        """Run ``work`` unless the recorded fingerprint matches and its output paths still exist."""
        manifest = self._manifest()
        fp = fingerprint(inputs)
        previous = manifest.get(name)
        if (
            not always
            and previous
            and previous.get("fingerprint") == fp
            and all(Path(p).exists() for p in previous.get("paths", []))
        ):
            self.announce(name, "skipped: inputs and settings unchanged")
            return dict(previous["outputs"])
        self.announce(name, "running")
        started = time.time()
        try:
            outputs = work()
        except StageFailed:
            raise
        except Exception as exc:
            raise StageFailed(name, describe(exc)) from exc
        manifest = self._manifest()
        manifest[name] = {
            "fingerprint": fp,
            "outputs": outputs,
            "paths": [str(v) for k, v in outputs.items() if k.endswith("_path")],
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_time_s": round(time.time() - started, 1),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False))
        self.announce(name, f"done in {time.time() - started:.0f} s")
        return outputs
