"""Build real cache trees in temporary directories, with controlled sizes and access times."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

KIB = 1024


def make_model(models: Path, name: str, size: int, used_at: float) -> Path:
    """A converted-model directory of ``size`` bytes last used at ``used_at``."""
    path = models / name
    path.mkdir(parents=True)
    weights = path / "model.safetensors"
    weights.write_bytes(os.urandom(size))
    (path / "config.json").write_text("{}")
    for file in path.iterdir():
        os.utime(file, (used_at, used_at))
    return path


def make_hf_repo(hub: Path, repo_id: str, size: int, used_at: float, incomplete: bool = False) -> Path:
    """A Hugging Face cache repo (blobs/snapshots/refs) with one file of ``size`` bytes."""
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
