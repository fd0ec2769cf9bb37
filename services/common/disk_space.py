"""Running out of disk space is RESOURCE_EXHAUSTED naming the volume and the bytes, not INTERNAL.

A writer that knows how much it will write asks ``check_room`` first and is refused before it
writes anything; a write that fails with ENOSPC or EDQUOT anyway (the space went to someone
else meanwhile) becomes the same error through ``no_space_error`` in the runtime's error
mapping. Either way nothing half-written is left: writers write to a temporary place and
rename.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from talklike.common.errors import ResourceExhausted

#: errno values that mean the volume (or the user's quota on it) is full.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Kept free beyond what a writer asks for: a volume filled to the last byte fails everything else.
MARGIN_BYTES = 1 << 20


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the place a new file would land on)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def volume_of(path: Path) -> Path:
    """The mount point of the volume holding ``path``."""
    current = existing_ancestor(path)
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def check_room(path: Path, needed_bytes: int, what: str) -> None:
    """ResourceExhausted unless the volume holding ``path`` has ``needed_bytes`` (and a margin) free."""
    free = shutil.disk_usage(existing_ancestor(path)).free
    if free < needed_bytes + MARGIN_BYTES:
        raise ResourceExhausted(
            f"not enough disk space for {what}: about {needed_bytes + MARGIN_BYTES:,} bytes needed on the volume "
            f"{volume_of(path)}, {free:,} free; free space there (talklike disk cleanup) or write elsewhere"
        )


def is_no_space(error: BaseException) -> bool:
    """True for an OSError saying the volume or the quota is full."""
    return isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS


def no_space_error(error: OSError) -> ResourceExhausted:
    """The ResourceExhausted for a write that failed with ENOSPC / EDQUOT."""
    where = Path(str(error.filename)) if error.filename else Path.cwd()
    try:
        free = f"{shutil.disk_usage(existing_ancestor(where)).free:,} bytes free now"
    except OSError:
        free = "free space unknown"
    return ResourceExhausted(
        f"the volume {volume_of(where)} is full ({error.strerror}; {free}); nothing was left half-written: "
        "free space there (talklike disk cleanup) and retry"
    )
