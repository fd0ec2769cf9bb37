"""How full a volume is, in bytes and inodes, against two watermarks.

Kubernetes' kubelet starts evicting pods when a node's filesystem has less than 10 % free
(``nodefs.available<10%``). The defaults here act well before that: above the high
watermark (85 % used) the volume is "low on space", and eviction frees down to the low
watermark (75 % used), so one large model download does not push the node over the edge.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

DEFAULT_HIGH_WATERMARK = 0.85
DEFAULT_LOW_WATERMARK = 0.75


@dataclass(frozen=True)
class Watermarks:
    """Used fractions: above ``high`` is low on space; eviction aims for ``low``."""

    high: float = DEFAULT_HIGH_WATERMARK
    low: float = DEFAULT_LOW_WATERMARK

    def __post_init__(self) -> None:
        if not 0.0 < self.low <= self.high < 1.0:
            raise ValueError(
                f"watermarks must satisfy 0 < low <= high < 1, got low={self.low} high={self.high}"
            )


@dataclass(frozen=True)
class VolumeUsage:
    """One volume (a managed root's filesystem, or a simulated one with a fixed capacity)."""

    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    inodes_total: int
    inodes_free: int
    watermarks: Watermarks
    simulated: bool = False

    @property
    def used_fraction(self) -> float:
        """The share of the volume not available to us: 1 - free / total (0 for an empty volume).

        Not ``used_bytes / total_bytes``: blocks reserved for root (5 % on ext4 by default)
        are neither used nor available, and kubelet's ``nodefs.available`` counts them as
        gone. With used / total, an ext4 volume at the 85 % high watermark would already be
        at kubelet's 10 % available, and pods would be evicted before this library acted.
        """
        return 1 - self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def inodes_used_fraction(self) -> float:
        """Used inodes / all inodes (0 where the filesystem reports none)."""
        return 1 - self.inodes_free / self.inodes_total if self.inodes_total else 0.0

    @property
    def above_high(self) -> bool:
        """Low on space: bytes or inodes above the high watermark."""
        return max(self.used_fraction, self.inodes_used_fraction) > self.watermarks.high

    @property
    def above_low(self) -> bool:
        """Fuller than eviction aims for: bytes or inodes above the low watermark."""
        return max(self.used_fraction, self.inodes_used_fraction) > self.watermarks.low

    @property
    def bytes_to_low_watermark(self) -> int:
        """Bytes to free to get down to the low watermark (0 when already below it)."""
        target_free = self.total_bytes - int(self.total_bytes * self.watermarks.low)
        return max(0, target_free - self.free_bytes)


@dataclass(frozen=True)
class TreeStats:
    """What one walk of a directory tree tells: bytes, files, newest use, files being written."""

    size_bytes: int
    files: int
    newest_use: float
    has_temp_parts: bool


def tree_stats(path: Path, temp_suffixes: tuple[str, ...] = ()) -> TreeStats:
    """Walk ``path`` once: allocated bytes (hard links counted once, links not followed), file
    count, newest atime/mtime, and whether a file name ends with one of ``temp_suffixes``."""
    seen: set[tuple[int, int]] = set()
    total = files = 0
    newest = 0.0
    temp = False
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if temp_suffixes and entry.name.endswith(temp_suffixes):
                        temp = True
                    newest = max(newest, st.st_atime, st.st_mtime)
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                    total += st.st_blocks * 512 if st.st_blocks else st.st_size
                    files += 1
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return TreeStats(total, files, newest, temp)


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    stats = tree_stats(path)
    return stats.size_bytes, stats.files


def measure(path: Path, watermarks: Watermarks) -> VolumeUsage:
    """Usage of the filesystem holding ``path`` (or its nearest existing parent)."""
    path = path if path.exists() else _existing_parent(path)
    disk = psutil.disk_usage(str(path))
    st = os.statvfs(path)
    return VolumeUsage(
        path=str(path),
        total_bytes=disk.total,
        used_bytes=disk.used,
        free_bytes=disk.free,
        inodes_total=st.f_files,
        inodes_free=st.f_favail,
        watermarks=watermarks,
    )


def _existing_parent(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path("/")
