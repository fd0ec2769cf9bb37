"""Real cache trees in a directory, with chosen sizes and last-use times, for tests.

Part of the library (not only its own tests) because whoever relies on eviction — a
service that pins what it serves, an agent that wraps the library — wants to test it the
same way: real files in a temporary directory and ``DiskManager(capacity_bytes=...)`` to
make that directory a small or nearly full volume. Sizes are exact file sizes; pass
multiples of the filesystem block (4 KiB) when a test does byte arithmetic on usage.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

KIB = 1024


def make_model(models: Path, name: str, size: int, used_at: float, *, config: bool = True) -> Path:
    """A converted-model directory, ``model.safetensors`` of ``size`` bytes (plus a small
    ``config.json`` unless ``config=False``), every file last used at ``used_at``."""
    path = models / name
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(os.urandom(size))
    if config:
        (path / "config.json").write_text("{}")
    for file in path.iterdir():
        os.utime(file, (used_at, used_at))
    return path


def make_hf_repo(hub: Path, repo_id: str, size: int, used_at: float, incomplete: bool = False) -> Path:
    """A Hugging Face cache repo (blobs/snapshots/refs) with one file of ``size`` bytes on ``main``;
    ``incomplete`` adds an ``.incomplete`` blob, as a download in progress leaves."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / digest).write_bytes(data)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model.safetensors").symlink_to(Path("../../blobs") / digest)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    if incomplete:
        (repo / "blobs" / (digest[:10] + ".incomplete")).write_bytes(b"partial")
    for dirpath, _dirs, files in os.walk(repo):
        for name in files:
            os.utime(Path(dirpath) / name, (used_at, used_at), follow_symlinks=False)
    return repo
