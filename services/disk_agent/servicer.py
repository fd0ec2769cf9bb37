"""talklike.v1.DiskAgentService: proto ↔ domain translation over ``DiskAgent``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from talklike.common.limits import SMALL_REQUEST_BYTES
from talklike.common.service import ServiceBinding
from talklike.disk_agent.core import DiskAgent
from talklike.disk_agent.settings import DiskAgentSettings
from talklike.v1 import disk_agent_pb2 as pb
from talklike.v1 import disk_agent_pb2_grpc as pb_grpc

from disk_manager import CacheEntry, VolumeUsage

EVENT_KINDS = {
    "snapshot": pb.USAGE_EVENT_KIND_SNAPSHOT,
    "above_high": pb.USAGE_EVENT_KIND_ABOVE_HIGH_WATERMARK,
    "below_high": pb.USAGE_EVENT_KIND_BELOW_HIGH_WATERMARK,
    "above_low": pb.USAGE_EVENT_KIND_ABOVE_LOW_WATERMARK,
    "below_low": pb.USAGE_EVENT_KIND_BELOW_LOW_WATERMARK,
}


def volume_pb(v: VolumeUsage) -> pb.VolumeUsage:
    return pb.VolumeUsage(
        path=v.path,
        total_bytes=v.total_bytes,
        used_bytes=v.used_bytes,
        free_bytes=v.free_bytes,
        inodes_total=v.inodes_total,
        inodes_free=v.inodes_free,
        high_watermark_fraction=v.watermarks.high,
        low_watermark_fraction=v.watermarks.low,
        used_fraction=v.used_fraction,
        above_high_watermark=v.above_high,
        simulated=v.simulated,
    )


def entry_pb(e: CacheEntry, pinned: set[str]) -> pb.CacheEntry:
    return pb.CacheEntry(
        key=e.key,
        kind=e.kind,
        path=str(e.path),
        size_bytes=e.size_bytes,
        file_count=e.files,
        last_used_unix_ms=int(e.last_used * 1000),
        pinned=e.key in pinned,
        incomplete=e.incomplete,
        locked=e.locked,
        detail=e.detail,
    )


class DiskAgentServicer(pb_grpc.DiskAgentServiceServicer):
    """Thin: every decision is in DiskAgent."""

    def __init__(self, agent: DiskAgent) -> None:
        self.agent = agent

    async def GetUsage(self, request: pb.GetUsageRequest, context: Any) -> pb.GetUsageResponse:
        reply = pb.GetUsageResponse(volumes=[volume_pb(v) for v in await self.agent.usage()])
        if request.include_entries:
            entries, leases = await self.agent.entries()
            pinned = {lease.key for lease in leases}
            reply.entries.extend(entry_pb(e, pinned) for e in entries)
            reply.leases.extend(
                pb.Lease(
                    lease_id=lease.lease_id,
                    key=lease.key,
                    holder=lease.holder,
                    expires_at_unix_ms=int(lease.expires_at * 1000),
                )
                for lease in leases
            )
        return reply

    async def EnsureFree(self, request: pb.EnsureFreeRequest, context: Any) -> pb.EnsureFreeResponse:
        removal = await self.agent.ensure_free(request.volume, request.required_bytes, request.dry_run)
        volumes = await self.agent.usage()
        return pb.EnsureFreeResponse(
            freed_bytes=removal.freed_bytes,
            evicted=[entry_pb(e, set()) for e in removal.evicted],
            free_bytes=min((v.free_bytes for v in volumes), default=0),
            dry_run=removal.dry_run,
            held_back=removal.blocked,
        )

    async def Cleanup(self, request: pb.CleanupRequest, context: Any) -> pb.CleanupResponse:
        removal = await self.agent.cleanup(list(request.kinds), request.dry_run)
        return pb.CleanupResponse(
            freed_bytes=removal.freed_bytes,
            removed=[str(r) for r in removal.removed],
            dry_run=removal.dry_run,
        )

    async def Pin(self, request: pb.PinRequest, context: Any) -> pb.PinResponse:
        lease = await self.agent.pin(request.key, request.ttl_seconds, request.holder or context.peer())
        return pb.PinResponse(lease_id=lease.lease_id, expires_at_unix_ms=int(lease.expires_at * 1000))

    async def Unpin(self, request: pb.UnpinRequest, context: Any) -> pb.UnpinResponse:
        return pb.UnpinResponse(released=await self.agent.unpin(request.lease_id))

    async def Migrate(self, request: pb.MigrateRequest, context: Any) -> pb.MigrateResponse:
        result = await self.agent.migrate(request.target_path, request.dry_run)
        return pb.MigrateResponse(
            moved=result.moved,
            environment=result.env,
            bytes_moved=result.bytes_moved,
            skipped=result.skipped,
            dry_run=result.dry_run,
        )

    async def WatchUsage(
        self, request: pb.WatchUsageRequest, context: Any
    ) -> AsyncIterator[pb.WatchUsageResponse]:
        async for event in self.agent.watch(request.interval_ms):
            yield pb.WatchUsageResponse(
                kind=EVENT_KINDS[event.kind],
                volume=volume_pb(event.volume),
                observed_at_unix_ms=int(event.observed_at * 1000),
            )


class DiskCollector(Collector):
    """Usage gauges measured at scrape time, and eviction counters."""

    def __init__(self, agent: DiskAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Any]:
        used = GaugeMetricFamily(
            "talklike_disk_used_bytes", "Bytes used on a managed volume.", labels=["volume"]
        )
        free = GaugeMetricFamily(
            "talklike_disk_free_bytes", "Bytes free on a managed volume.", labels=["volume"]
        )
        frac = GaugeMetricFamily(
            "talklike_disk_used_fraction",
            "Share of a managed volume not available (1 - free/total, reserved blocks included).",
            labels=["volume"],
        )
        for v in self.agent.manager.volumes():
            used.add_metric([v.path], v.used_bytes)
            free.add_metric([v.path], v.free_bytes)
            frac.add_metric([v.path], v.used_fraction)
        yield from (used, free, frac)
        yield CounterMetricFamily(
            "talklike_disk_evictions", "Cache entries evicted.", value=self.agent.evictions
        )
        yield CounterMetricFamily(
            "talklike_disk_evicted_bytes", "Bytes freed by eviction.", value=self.agent.evicted_bytes
        )


def create_service(settings: DiskAgentSettings) -> ServiceBinding:
    """The disk agent's binding for the shared server runtime."""
    agent = DiskAgent(settings)
    servicer = DiskAgentServicer(agent)

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_DiskAgentServiceServicer_to_server(servicer, server)

    return ServiceBinding(
        full_name=settings.full_name,
        register=register,
        collectors=[DiskCollector(agent)],
        max_request_bytes=SMALL_REQUEST_BYTES,
    )
