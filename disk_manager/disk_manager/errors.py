"""Errors a caller can act on; each says what was asked, what stood in the way, and by how much."""

from __future__ import annotations

from pathlib import Path


class DiskManagerError(Exception):
    """Base of the library's errors."""


class OutsideManagedRoots(DiskManagerError, PermissionError):
    """A path that is not under any managed root: the library never touches it."""

    def __init__(self, path: Path, roots: list[Path]) -> None:
        super().__init__(f"{path} is outside the managed roots ({', '.join(str(r) for r in roots)})")
        self.path = path


class InvalidSize(DiskManagerError, ValueError):
    """A negative or absurd byte count."""


class InsufficientSpace(DiskManagerError):
    """The requested free space cannot be reached without touching pinned or in-use entries."""

    def __init__(self, volume: str, requested_bytes: int, reachable_bytes: int, blocked: list[str]) -> None:
        self.volume = volume
        self.requested_bytes = requested_bytes
        self.reachable_bytes = reachable_bytes
        self.shortfall_bytes = max(0, requested_bytes - reachable_bytes)
        self.blocked = blocked
        why = f"; held back: {', '.join(blocked[:5])}" if blocked else ""
        super().__init__(
            f"cannot free enough space on {volume}: {requested_bytes} bytes free requested, at most "
            f"{reachable_bytes} reachable, short by {self.shortfall_bytes} bytes{why}"
        )


class MigrationError(DiskManagerError):
    """Moving a cache failed; the old cache is left as it was."""
