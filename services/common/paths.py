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

from talklike.common.errors import InvalidArgument, NotFound, quote

DEFAULT_HOME = Path("var")

#: Sub-directories of the data home, as DESIGN.md lays them out.
SUBDIRS = ("datasets", "adapters", "models", "reports", "logs", "run", "packs")


def data_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data home: the explicit value, else ``TALKLIKE_HOME``, else ``./var``; absolute."""
    raw = explicit if explicit not in (None, "") else os.environ.get("TALKLIKE_HOME") or DEFAULT_HOME
    return Path(raw).expanduser().resolve()


#: The process umask of every service: what a service writes in the data home (datasets, jobs.db,
#: adapters, reports, logs) is the owner's alone, 0600 files and 0700 folders.
PRIVATE_UMASK = 0o077


def ensure_home(home: Path) -> Path:
    """Create the data home and its standard sub-directories, readable by their owner only."""
    for sub in SUBDIRS:
        (home / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    return home


def open_private_append(path: Path) -> IO[bytes]:
    """``path`` opened for appending bytes, created (or made) 0600: a log is the owner's alone."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


#: Longest path and longest single name Linux accepts (PATH_MAX, NAME_MAX), in bytes.
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def check_path_text(raw: str, field: str) -> None:
    """InvalidArgument naming ``field`` for a string no filesystem call should see.

    Empty, NUL bytes, or longer than the system allows: such a path used to reach ``stat`` and
    come back as INTERNAL (``File name too long``, ``embedded null byte``).
    """
    if not raw or not raw.strip():
        raise InvalidArgument(field, "must not be empty")
    if "\x00" in raw:
        raise InvalidArgument(field, "must not contain NUL bytes")
    encoded = raw.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidArgument(field, f"the path is {len(encoded):,} bytes; at most {MAX_PATH_BYTES:,}")
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > MAX_NAME_BYTES:
        raise InvalidArgument(
            field,
            f"a name in the path is {longest:,} bytes; at most {MAX_NAME_BYTES} per file or folder name",
        )


def resolve_in_home(home: Path, raw: str, field: str) -> Path:
    """Resolve ``raw`` (relative to the home, or absolute) and refuse it if it leaves the home.

    Raises InvalidArgument naming ``field`` when the path is empty, not a path (``check_path_text``)
    or escapes the data home.
    """
    check_path_text(raw, field)
    home = home.resolve()
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = home / candidate
    resolved = candidate.resolve()
    if resolved != home and home not in resolved.parents:
        raise InvalidArgument(field, f"path {quote(raw)} is outside the data home {str(home)!r}")
    return resolved


def refuse_directory(path: Path, raw: str, field: str) -> None:
    """InvalidArgument naming ``field`` when a path that must name a file names a directory."""
    if path.is_dir():
        raise InvalidArgument(field, f"{quote(raw)} is a directory; name a file in it")


def file_in_home(home: Path, raw: str, field: str) -> Path:
    """An existing file inside the home: InvalidArgument for a bad path or a directory, NotFound when absent."""
    path = resolve_in_home(home, raw, field)
    refuse_directory(path, raw, field)
    if not path.is_file():
        raise NotFound("file", raw, f"paths are relative to the data home {str(home.resolve())!r}")
    return path


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
