"""The data home (``TALKLIKE_HOME``) and the one rule for paths that come from requests.

A path from a request is resolved against the data home and must stay inside it, so that
no RPC can read or write elsewhere on the machine (``../../etc/passwd``, absolute paths,
symlinks pointing out).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from talklike.common.errors import InvalidArgument

DEFAULT_HOME = Path("var")

#: Sub-directories of the data home, as DESIGN.md lays them out.
SUBDIRS = ("datasets", "adapters", "models", "reports", "logs", "run", "packs")


def data_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data home: the explicit value, else ``TALKLIKE_HOME``, else ``./var``; absolute."""
    raw = explicit if explicit not in (None, "") else os.environ.get("TALKLIKE_HOME") or DEFAULT_HOME
    return Path(raw).expanduser().resolve()


def ensure_home(home: Path) -> Path:
    """Create the data home and its standard sub-directories."""
    for sub in SUBDIRS:
        (home / sub).mkdir(parents=True, exist_ok=True)
    return home


def resolve_in_home(home: Path, raw: str, field: str) -> Path:
    """Resolve ``raw`` (relative to the home, or absolute) and refuse it if it leaves the home.

    Raises InvalidArgument naming ``field`` when the path is empty or escapes the data home.
    """
    if not raw or not raw.strip():
        raise InvalidArgument(field, "must not be empty")
    if "\x00" in raw:
        raise InvalidArgument(field, "must not contain NUL bytes")
    home = home.resolve()
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = home / candidate
    resolved = candidate.resolve()
    if resolved != home and home not in resolved.parents:
        raise InvalidArgument(field, f"path {raw!r} is outside the data home {str(home)!r}")
    return resolved


@contextmanager
def atomic_writer(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    A crash half-way leaves the old file (or no file), never a truncated one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)
