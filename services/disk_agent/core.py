"""The agent's domain core: disk_manager calls, off the event loop, with talklike's errors.

The library raises its own errors (it is usable without talklike); this is the one place
they become the domain errors the runtime maps to status codes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from disk_manager.caches import CLEANUP_KINDS, EVICTABLE_KINDS
from disk_manager.manager import validate_size
from talklike.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from talklike.common.paths import check_path_text
from talklike.disk_agent.settings import DiskAgentSettings

from disk_manager import (
    CacheEntry,
    CacheLocations,
    DiskManager,
    InsufficientSpace,
    InvalidSize,
    Lease,
    MigrationError,
    MigrationResult,
    OutsideManagedRoots,
    Removal,
    VolumeUsage,
    Watermarks,
)

T = TypeVar("T")
MAX_PIN_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class UsageEvent:
    """A watermark crossing (or the initial snapshot) of one volume."""

    kind: str  # "snapshot" | "above_low" | "above_high" | "below_high" | "below_low"
    volume: VolumeUsage
    observed_at: float


class DiskAgent:
    """One DiskManager over the talklike models cache, with the agent's rules on top."""

    def __init__(self, settings: DiskAgentSettings) -> None:
        self.settings = settings
        models = settings.managed_models_dir
        models.mkdir(parents=True, exist_ok=True)
        self.manager = DiskManager(
            CacheLocations.for_models_dir(models),
            watermarks=Watermarks(settings.high_watermark, settings.low_watermark),
            capacity_bytes=settings.capacity_bytes or None,
        )
        self.evictions = 0
        self.evicted_bytes = 0

    async def _run(self, fn: Any, *args: Any) -> Any:
        """Run blocking file work in a thread, translating the library's errors."""
        try:
            return await asyncio.to_thread(fn, *args)
        except OutsideManagedRoots as exc:
            raise PermissionDenied(str(exc)) from exc
        except InsufficientSpace as exc:
            raise FailedPrecondition(str(exc)) from exc
        except MigrationError as exc:
            raise FailedPrecondition(str(exc)) from exc

    def _check_volume(self, volume: str) -> None:
        if volume:
            check_path_text(volume, "volume")
            try:
                self.manager.check_path(volume)
            except OutsideManagedRoots as exc:
                raise PermissionDenied(f"volume: {exc}") from exc

    async def usage(self) -> list[VolumeUsage]:
        """Usage of every managed volume."""
        return await self._run(self.manager.volumes)

    async def entries(self) -> tuple[list[CacheEntry], list[Lease]]:
        """Entries LRU first, and the live pins, soonest to lapse first."""
        entries = await self._run(self.manager.entries)
        leases: list[Lease] = await self._run(self.manager.state.active_leases)
        return entries, sorted(leases, key=lambda lease: lease.expires_at)

    async def ensure_free(self, volume: str, required_bytes: int, dry_run: bool) -> Removal:
        """Evict LRU unpinned entries until ``required_bytes`` are free."""
        self._check_volume(volume)
        try:
            validate_size(required_bytes, "required_bytes")
        except InvalidSize as exc:
            raise InvalidArgument("required_bytes", str(exc).removeprefix("required_bytes ")) from exc
        removal: Removal = await self._run(self.manager.ensure_free, required_bytes, dry_run)
        if not dry_run:
            self.evictions += len(removal.removed)
            self.evicted_bytes += removal.freed_bytes
        return removal

    async def cleanup(self, kinds: list[str], dry_run: bool) -> Removal:
        """Remove junk caches of ``kinds`` (all when empty)."""
        unknown = sorted(set(kinds) - set(CLEANUP_KINDS))
        if unknown:
            raise InvalidArgument("kinds", f"unknown kinds {unknown}; known: {', '.join(CLEANUP_KINDS)}")
        return await self._run(self.manager.cleanup_cache, kinds or list(CLEANUP_KINDS), dry_run)

    async def pin(self, key: str, ttl_s: int, holder: str) -> Lease:
        """Pin an entry key ("<kind>:<name>") for ``ttl_s`` seconds."""
        kind, _, name = key.partition(":")
        if kind not in EVICTABLE_KINDS or not name.strip():
            raise InvalidArgument(
                "key", f"must be '<kind>:<name>' with kind one of {', '.join(EVICTABLE_KINDS)}"
            )
        if not 1 <= ttl_s <= MAX_PIN_TTL_S:
            raise InvalidArgument(
                "ttl_seconds", f"must be between 1 and {MAX_PIN_TTL_S} (7 days), got {ttl_s}"
            )
        return await self._run(self.manager.pin, key, float(ttl_s), holder)

    async def unpin(self, lease_id: str) -> bool:
        """Release a lease."""
        if not lease_id:
            raise InvalidArgument("lease_id", "must not be empty")
        return await self._run(self.manager.unpin, lease_id)

    async def migrate(self, target: str, dry_run: bool) -> MigrationResult:
        """Move the caches under an allowed migration target."""
        check_path_text(target, "target_path")
        resolved = Path(target).expanduser().resolve()
        allowed = self.settings.allowed_migration_targets
        if not any(resolved == a or a in resolved.parents for a in allowed):
            raise PermissionDenied(
                f"target_path {str(resolved)!r} is not an allowed migration target "
                f"({', '.join(map(str, allowed))}); set TALKLIKE_DISK_AGENT_MIGRATION_TARGETS"
            )
        return await self._run(self.manager.setup_network_storage, resolved, dry_run)

    async def watch(self, interval_ms: int) -> AsyncIterator[UsageEvent]:
        """A snapshot of each volume, then an event for each watermark a volume crosses.

        A volume is in one of three zones: at or below the low watermark, between the two,
        above the high one. Moving between zones yields one event per watermark crossed, in
        the order crossed (filling up from below low: ``above_low`` then ``above_high``).
        ``interval_ms`` 0 means the agent's setting.
        """
        interval_ms = interval_ms or self.settings.watch_interval_ms
        if not 100 <= interval_ms <= 3_600_000:
            raise InvalidArgument("interval_ms", f"must be between 100 and 3600000, got {interval_ms}")
        zones: dict[str, int] = {}
        while True:
            now = time.time()
            for volume in await self.usage():
                zone = int(volume.above_low) + int(volume.above_high)
                previous = zones.get(volume.path)
                zones[volume.path] = zone
                if previous is None:
                    yield UsageEvent("snapshot", volume, now)
                    continue
                for kind in crossings(previous, zone):
                    yield UsageEvent(kind, volume, now)
            await asyncio.sleep(interval_ms / 1000)


#: Zone boundaries: crossing from zone i to i + 1 passes watermark ``_WATERMARK_NAMES[i]``.
_WATERMARK_NAMES = ("low", "high")


def crossings(previous_zone: int, zone: int) -> list[str]:
    """Events for a move between zones (0: at or below low, 1: between, 2: above high)."""
    if zone > previous_zone:
        return [f"above_{_WATERMARK_NAMES[z]}" for z in range(previous_zone, zone)]
    return [f"below_{_WATERMARK_NAMES[z]}" for z in range(previous_zone - 1, zone - 1, -1)]
