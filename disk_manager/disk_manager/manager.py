"""DiskManager: the one object the seed's snippet uses, and the disk agent wraps.

dm = DiskManager()
if dm.check_disk_space():          # a DiskReport, truthy when a volume is low on space
    dm.cleanup_cache()             # pip / conda / stale HF revisions: junk, never a model in use
dm.setup_network_storage("/workspace")
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from disk_manager import caches, migrate
from disk_manager.caches import CLEANUP_KINDS, EVICTING_MARK, CacheEntry, CacheLocations
from disk_manager.errors import InsufficientSpace, InvalidSize, MigrationError, OutsideManagedRoots
from disk_manager.state import Lease, StateStore
from disk_manager.usage import VolumeUsage, Watermarks, measure, tree_size

#: No single request may ask for more than this (1 PiB): a typo, not a model.
MAX_REQUEST_BYTES = 1 << 50


@dataclass(frozen=True)
class DiskReport:
    """Usage of every managed volume; truthy when any of them is above its high watermark."""

    volumes: list[VolumeUsage]

    def __bool__(self) -> bool:
        return any(v.above_high for v in self.volumes)

    @property
    def low_on_space(self) -> list[VolumeUsage]:
        """The volumes above their high watermark."""
        return [v for v in self.volumes if v.above_high]


@dataclass(frozen=True)
class Removal:
    """What a cleanup or an eviction removed (or, in a dry run, would remove).

    ``removed`` names everything in removal order (entry keys for an eviction, e.g.
    ``models:smollm2``; ``pip:/path``, ``conda:/path/x.tar.bz2``, ``hf-revision:<hash>`` for a
    cleanup); ``evicted`` holds the evicted entries themselves, with their sizes; ``blocked``
    the entries an eviction had to skip, with the reason.
    """

    freed_bytes: int
    removed: list[str]
    dry_run: bool
    evicted: list[CacheEntry] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


class DiskManager:
    """Usage, cleanup, LRU eviction with pins, and migration of the managed caches."""

    def __init__(
        self,
        locations: CacheLocations | None = None,
        *,
        watermarks: Watermarks | None = None,
        capacity_bytes: int | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.locations = locations or CacheLocations.from_environment()
        self.watermarks = watermarks or Watermarks()
        self.capacity_bytes = capacity_bytes
        roots = self.locations.roots()
        self.state = StateStore(state_dir or (roots[0] / ".disk_manager" if roots else Path(".disk_manager")))
        self._thread_lock = threading.Lock()

    # -- where we may act ---------------------------------------------------------------
    def roots(self) -> list[Path]:
        """The managed directories."""
        return self.locations.roots()

    def check_path(self, path: Path | str) -> Path:
        """Resolve ``path`` and refuse it unless it lies under a managed root."""
        resolved = Path(path).expanduser().resolve()
        for root in self.roots():
            if resolved == root or root in resolved.parents:
                return resolved
        raise OutsideManagedRoots(resolved, self.roots())

    # -- usage --------------------------------------------------------------------------
    def volumes(self) -> list[VolumeUsage]:
        """One usage per filesystem holding a managed root (one simulated volume with a capacity override)."""
        existing = [r for r in self.roots() if r.exists()]
        if self.capacity_bytes is not None:
            used = sum(tree_size(r)[0] for r in _outermost(existing))
            anchor = existing[0] if existing else (self.roots() or [Path.cwd()])[0]
            return [
                VolumeUsage(
                    path=str(anchor),
                    total_bytes=self.capacity_bytes,
                    used_bytes=used,
                    free_bytes=max(0, self.capacity_bytes - used),
                    inodes_total=0,
                    inodes_free=0,
                    watermarks=self.watermarks,
                    simulated=True,
                )
            ]
        by_device: dict[int, VolumeUsage] = {}
        for root in existing or self.roots()[:1]:
            probe = root if root.exists() else Path(root.anchor)
            by_device.setdefault(probe.stat().st_dev, measure(probe, self.watermarks))
        return list(by_device.values())

    def check_disk_space(self) -> DiskReport:
        """Usage of every managed volume. Truthy when one is low on space (above the high watermark)."""
        return DiskReport(self.volumes())

    def free_bytes(self) -> int:
        """Free bytes on the tightest managed volume."""
        return min((v.free_bytes for v in self.volumes()), default=0)

    # -- entries ------------------------------------------------------------------------
    def entries(self) -> list[CacheEntry]:
        """Evictable-kind entries, least recently used first (recorded use beats atime)."""
        recorded = self.state.last_used()
        found = caches.scan(self.locations)
        return sorted(found, key=lambda e: max(e.last_used, recorded.get(e.key, 0.0)))

    def touch(self, key: str) -> None:
        """Record that ``key`` was just used, so LRU eviction keeps it longest."""
        self.state.touch(key)

    def pin(self, key: str, ttl_s: float = 3600.0, holder: str = "") -> Lease:
        """Protect an entry from eviction for ``ttl_s`` seconds.

        Taken under the eviction lock: a pin requested while an eviction (or a migration) is
        under way waits for it to finish, so an entry is never deleted after its pin was
        granted. Pin first, then check that the entry is (still) there and use it.
        """
        with self._exclusive():
            return self.state.pin(key, ttl_s, holder or f"pid-{os.getpid()}")

    def unpin(self, lease_id: str) -> bool:
        """Release a pin; False when it was not held."""
        return self.state.unpin(lease_id)

    # -- cleanup and eviction -----------------------------------------------------------
    def cleanup_cache(self, kinds: Iterable[str] = CLEANUP_KINDS, dry_run: bool = False) -> Removal:
        """Delete what is safe to lose: the pip cache, conda package tarballs, HF revisions no ref points to.

        Models in use are never touched here; freeing space by deleting models is
        ``ensure_free``'s job, which respects pins and LRU order.
        """
        kinds = list(kinds)
        unknown = sorted(set(kinds) - set(CLEANUP_KINDS))
        if unknown:
            raise ValueError(f"unknown cleanup kinds {unknown}; known: {list(CLEANUP_KINDS)}")
        removed: list[str] = []
        freed = 0
        with self._exclusive():
            if "pip" in kinds and self.locations.pip and self.locations.pip.is_dir():
                size, _ = tree_size(self.locations.pip)
                removed.append(f"pip:{self.locations.pip}")
                freed += size
                if not dry_run:
                    # Empty it, keep the directory: after a migration it is a link to the new
                    # place, which rmtree would refuse (and ignore_errors would hide).
                    for child in self.locations.pip.iterdir():
                        _delete(child)
            if "conda" in kinds:
                for pkgs in self.locations.conda_pkgs:
                    if not pkgs.is_dir():
                        continue
                    for tarball in [*pkgs.glob("*.tar.bz2"), *pkgs.glob("*.conda")]:
                        removed.append(f"conda:{tarball}")
                        freed += tarball.stat().st_size
                        if not dry_run:
                            tarball.unlink(missing_ok=True)
            if "hf-stale" in kinds and self.locations.hf_hub and self.locations.hf_hub.is_dir():
                freed_hf, stale = self._stale_hf_revisions(dry_run)
                freed += freed_hf
                removed.extend(stale)
        return Removal(freed_bytes=freed, removed=removed, dry_run=dry_run)

    def _stale_hf_revisions(self, dry_run: bool) -> tuple[int, list[str]]:
        from huggingface_hub import scan_cache_dir

        assert self.locations.hf_hub is not None
        info = scan_cache_dir(self.locations.hf_hub)
        stale = [rev.commit_hash for repo in info.repos for rev in repo.revisions if not rev.refs]
        if not stale:
            return 0, []
        strategy = info.delete_revisions(*stale)
        if not dry_run:
            strategy.execute()
        return strategy.expected_freed_size, [f"hf-revision:{h}" for h in stale]

    def ensure_free(self, required_bytes: int, dry_run: bool = False) -> Removal:
        """Evict least-recently-used unpinned entries until ``required_bytes`` are free.

        The whole plan is made before anything is deleted: when pins, locks or downloads in
        progress make the request impossible, InsufficientSpace (with the shortfall) is
        raised and nothing is removed. Concurrent callers, in threads or processes, are
        serialized, so an entry is never deleted twice and a pin taken meanwhile is seen.
        """
        validate_size(required_bytes, "required_bytes")
        with self._exclusive():
            free = self.free_bytes()
            if free >= required_bytes:
                return Removal(freed_bytes=0, removed=[], dry_run=dry_run)
            return self._evict(required_bytes - free, required_bytes, free, dry_run)

    def evict_to_low_watermark(self, dry_run: bool = False) -> Removal:
        """Evict until every volume is at or below its low watermark."""
        with self._exclusive():
            need = max((v.bytes_to_low_watermark for v in self.volumes()), default=0)
            if need == 0:
                return Removal(freed_bytes=0, removed=[], dry_run=dry_run)
            return self._evict(need, need, 0, dry_run)

    def _evict(self, need: int, requested: int, free: int, dry_run: bool) -> Removal:
        """Plan LRU victims worth ``need`` bytes, refuse when it cannot be met, else delete them.

        Runs under ``_exclusive``, so the pins read here cannot change before the deletions.
        """
        if not dry_run:
            self._sweep_evicting_leftovers()
        pinned = self.state.pinned_keys()
        victims: list[CacheEntry] = []
        blocked: list[str] = []
        freed = 0
        for entry in self.entries():
            if freed >= need:
                break
            if entry.key in pinned:
                blocked.append(f"{entry.key} (pinned)")
            elif not entry.evictable:
                blocked.append(f"{entry.key} ({'in progress' if entry.incomplete else 'locked'})")
            else:
                victims.append(entry)
                freed += entry.size_bytes
        if freed < need:
            volume = self.volumes()[0].path if self.volumes() else "?"
            raise InsufficientSpace(volume, requested, free + freed, blocked)
        if not dry_run:
            for entry in victims:
                remove_entry_path(entry.path)
                self.state.forget(entry.key)
        return Removal(
            freed_bytes=freed,
            removed=[e.key for e in victims],
            dry_run=dry_run,
            evicted=victims,
            blocked=blocked,
        )

    def _sweep_evicting_leftovers(self) -> None:
        """Finish deleting what an eviction that crashed mid-way had already set aside."""
        loc = self.locations
        parents = [loc.models, loc.hf_hub]
        if loc.torch is not None:
            parents += [loc.torch / "hub", loc.torch / "hub" / "checkpoints"]
        for parent in parents:
            if parent is None or not parent.is_dir():
                continue
            for leftover in parent.glob(f".*{EVICTING_MARK}*"):
                _delete(leftover, ignore_errors=True)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One eviction or cleanup at a time: a thread lock plus a flock for other processes."""
        self.state.directory.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.state.directory / "evict.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- models and migration -----------------------------------------------------------
    def prepare_for_model(self, size_or_model_id: int | str, dry_run: bool = False) -> Removal:
        """Make room for a model of that size (bytes), or for a hub id whose size its name tells.

        A model already in the cache needs no room. The size of an uncached hub id is
        estimated from the parameter count in its name ("7B" → 7e9 × 2 bytes in bf16, +10 %);
        without one the call refuses, because guessing low would fill the disk mid-download.
        """
        if isinstance(size_or_model_id, int):
            return self.ensure_free(size_or_model_id, dry_run)
        model_id = size_or_model_id
        folder = "models--" + model_id.replace("/", "--")
        if any(e.key == f"hf:{folder}" and not e.incomplete for e in self.entries()):
            return Removal(freed_bytes=0, removed=[], dry_run=dry_run)
        size = estimate_model_bytes(model_id)
        if size is None:
            raise InvalidSize(
                f"cannot tell the size of {model_id!r} from its name and it is not cached; pass the size in bytes"
            )
        return self.ensure_free(size, dry_run)

    def setup_network_storage(self, target: Path | str, dry_run: bool = False) -> migrate.MigrationResult:
        """Move the managed caches under ``target`` (e.g. a network volume at /workspace).

        Copy, verify, switch (a symlink at the old place and the environment variables),
        then delete the local copy; a failure before the switch leaves the old cache in use.
        Runs under the eviction lock (no eviction, cleanup or pin meanwhile, so no pin is
        written into the copy being left behind) and refuses while an entry's lock is held:
        a download or conversion writing into the old place would lose its work.
        """
        with self._exclusive():
            if not dry_run:
                busy = [e.key for e in self.entries() if e.locked]
                if busy:
                    raise MigrationError(
                        f"entries are being written ({', '.join(busy[:5])}); wait for those downloads "
                        "or conversions to finish, then migrate; nothing was moved"
                    )
            return migrate.migrate_caches(self.locations, Path(target), dry_run=dry_run)


def remove_entry_path(path: Path) -> None:
    """Delete an entry so that it is either whole or gone under its own name.

    ``rmtree`` deletes file by file: a crash (or a permission error) half-way would leave a
    directory with its config but not all its weights, which a loader takes for a model.
    Renaming it aside first (atomic, same directory) means the name disappears at once; the
    renamed remains are deleted next, or swept by the next eviction if this process dies.
    """
    doomed = path.with_name(f".{path.name}{EVICTING_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    path.rename(doomed)
    _delete(doomed)


def _delete(path: Path, ignore_errors: bool = False) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            if not ignore_errors:
                raise


def validate_size(value: int, field_name: str) -> None:
    """Refuse negative and absurd byte counts with a message naming the field."""
    if value < 0:
        raise InvalidSize(f"{field_name} must not be negative, got {value}")
    if value > MAX_REQUEST_BYTES:
        raise InvalidSize(f"{field_name} {value} is absurd (over 1 PiB)")


_PARAMS = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def estimate_model_bytes(model_id: str) -> int | None:
    """Bytes for bf16 weights of a model whose name carries its parameter count, plus 10 %."""
    match = _PARAMS.search(model_id.split("/")[-1])
    if not match:
        return None
    params = float(match.group(1)) * (1e9 if match.group(2).lower() == "b" else 1e6)
    return int(params * 2 * 1.1)


def parse_size(text: str) -> int:
    """'10G', '500M', '1.5GiB', '1024' → bytes (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if not match:
        raise InvalidSize(f"cannot read {text!r} as a size; use e.g. 500M, 10G or a byte count")
    factor = 1024 ** " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * factor)


def _outermost(paths: list[Path]) -> list[Path]:
    """Drop paths nested in another one, so nested roots are not counted twice."""
    return [p for p in paths if not any(o != p and o in p.parents for o in paths)]
