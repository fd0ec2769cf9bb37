"""A dataset folder's life on disk: who may replace it, and how a new one takes its place.

A service writes a whole folder (a dataset, a moderated copy) into a temporary directory
beside the target, flushes it, and swaps it in with renames, so a reader never sees half of
it. It replaces a folder only when that folder carries the service's marker in its JSON
summary: a user's own directory is never deleted by a mistyped ``--out``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from talklike.common.errors import AlreadyExists


def check_replaceable(out_dir: Path, summary_file: str, marker: str, what: str) -> None:
    """AlreadyExists when ``out_dir`` holds something that is not ``what`` (its ``summary_file``
    is a JSON object with ``marker: 1``); an absent or empty folder may be written."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise AlreadyExists(f"{out_dir} exists and is not a directory; choose another --out")
    if not any(out_dir.iterdir()):
        return
    try:
        summary = json.loads((out_dir / summary_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict) or summary.get(marker) != 1:
        raise AlreadyExists(
            f"{out_dir} exists and is not {what}, so it is not replaced; choose another --out or empty it"
        )


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (and ``root``) to disk before it is renamed into place."""
    for path in [*root.rglob("*"), root]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def swap_in(tmp: Path, out: Path) -> None:
    """Put ``tmp`` where ``out`` is: the old directory moves aside first, and goes only after."""
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        old.rmdir()
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
