"""The disk agent through real gRPC on loopback, on a simulated nearly full models cache."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from disk_manager.testing import KIB, make_model
from disk_manager.usage import tree_size
from talklike.common.testing import RunningService, running_service
from talklike.disk_agent.servicer import create_service
from talklike.disk_agent.settings import DiskAgentSettings
from talklike.v1 import disk_agent_pb2 as pb
from talklike.v1 import disk_agent_pb2_grpc as pb_grpc

Agent = tuple[RunningService, pb_grpc.DiskAgentServiceStub, Path]
NOW = time.time()


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    models = tmp_path / "home" / "models"
    for i, name in enumerate(["oldest", "older", "newer", "newest"]):
        make_model(models, name, 100 * KIB, NOW - 4000 + 1000 * i, config=False)
    capacity = tree_size(models)[0] + 30 * KIB  # nearly full
    settings = DiskAgentSettings(
        home=tmp_path / "home",
        port=0,
        metrics_port=0,
        capacity_bytes=capacity,
        migration_targets=str(tmp_path / "nfs"),
    )
    async with running_service(create_service(settings), settings) as srv:
        yield srv, pb_grpc.DiskAgentServiceStub(srv.channel()), models


async def test_ensure_free_evicts_exactly_the_lru_unpinned_entries(agent: Agent) -> None:
    _srv, stub, models = agent
    pin = await stub.Pin(pb.PinRequest(key="models:oldest", ttl_seconds=60, holder="test"))
    assert pin.lease_id

    dry = await stub.EnsureFree(pb.EnsureFreeRequest(required_bytes=200 * KIB, dry_run=True))
    assert [e.key for e in dry.evicted] == ["models:older", "models:newer"] and dry.dry_run
    assert (models / "older").exists()

    reply = await stub.EnsureFree(pb.EnsureFreeRequest(required_bytes=200 * KIB))
    assert [e.key for e in reply.evicted] == ["models:older", "models:newer"]
    assert reply.held_back == ["models:oldest (pinned)"]
    assert reply.free_bytes >= 200 * KIB
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == ["newest", "oldest"]

    usage = await stub.GetUsage(pb.GetUsageRequest(include_entries=True))
    assert {e.key: e.pinned for e in usage.entries} == {"models:oldest": True, "models:newest": False}
    assert [(lease.lease_id, lease.key, lease.holder) for lease in usage.leases] == [
        (pin.lease_id, "models:oldest", "test")
    ]
    assert usage.volumes[0].simulated


async def test_refuses_with_the_shortfall_when_pins_make_it_impossible(agent: Agent) -> None:
    _srv, stub, models = agent
    for name in ("oldest", "older", "newer"):
        await stub.Pin(pb.PinRequest(key=f"models:{name}", ttl_seconds=60))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.EnsureFree(pb.EnsureFreeRequest(required_bytes=300 * KIB))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "short by" in (info.value.details() or "")
    assert len([p for p in models.iterdir() if not p.name.startswith(".")]) == 4  # nothing deleted


async def test_bad_requests_name_the_field_and_paths_stay_inside(agent: Agent, tmp_path: Path) -> None:
    _srv, stub, _models = agent
    cases = [
        (pb.EnsureFreeRequest(required_bytes=-1), grpc.StatusCode.INVALID_ARGUMENT, "required_bytes"),
        (pb.EnsureFreeRequest(required_bytes=1 << 55), grpc.StatusCode.INVALID_ARGUMENT, "required_bytes"),
        (pb.EnsureFreeRequest(volume="/etc", required_bytes=1), grpc.StatusCode.PERMISSION_DENIED, "outside"),
    ]
    for request, code, needle in cases:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.EnsureFree(request)
        assert info.value.code() == code and needle in (info.value.details() or "")
    for request, field in (
        (pb.PinRequest(key="nonsense", ttl_seconds=5), "key"),
        (pb.PinRequest(key="models:a", ttl_seconds=0), "ttl_seconds"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Pin(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Migrate(pb.MigrateRequest(target_path="/tmp/elsewhere-not-allowed"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Cleanup(pb.CleanupRequest(kinds=["models"]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_migrate_dry_run_and_unpin(agent: Agent, tmp_path: Path) -> None:
    _srv, stub, _models = agent
    reply = await stub.Migrate(pb.MigrateRequest(target_path=str(tmp_path / "nfs"), dry_run=True))
    assert reply.dry_run and reply.moved["models"].endswith("nfs/models") and reply.bytes_moved >= 400 * KIB
    lease = await stub.Pin(pb.PinRequest(key="models:newest", ttl_seconds=60))
    assert (await stub.Unpin(pb.UnpinRequest(lease_id=lease.lease_id))).released
    assert not (await stub.Unpin(pb.UnpinRequest(lease_id=lease.lease_id))).released


async def test_watch_reports_a_watermark_crossing(agent: Agent) -> None:
    _srv, stub, _models = agent
    stream = stub.WatchUsage(pb.WatchUsageRequest(interval_ms=100))
    first = await asyncio.wait_for(stream.read(), 5)
    assert first.kind == pb.USAGE_EVENT_KIND_SNAPSHOT and first.volume.above_high_watermark
    await stub.EnsureFree(pb.EnsureFreeRequest(required_bytes=300 * KIB))
    event = await asyncio.wait_for(stream.read(), 5)
    assert event.kind == pb.USAGE_EVENT_KIND_BELOW_HIGH_WATERMARK and not event.volume.above_high_watermark
    # From 93 % to about 23 % used: both watermarks crossed, high first, in one measurement.
    event = await asyncio.wait_for(stream.read(), 5)
    assert event.kind == pb.USAGE_EVENT_KIND_BELOW_LOW_WATERMARK
    assert event.volume.used_fraction <= event.volume.low_watermark_fraction
    stream.cancel()


async def test_metrics_show_usage_and_evictions(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_model(models, "a", 50 * KIB, NOW - 100, config=False)
    settings = DiskAgentSettings(
        home=tmp_path, port=0, metrics_port=0, capacity_bytes=tree_size(models)[0] + KIB
    )
    binding = create_service(settings)
    async with running_service(binding, settings) as srv:
        stub = pb_grpc.DiskAgentServiceStub(srv.channel())
        await stub.EnsureFree(pb.EnsureFreeRequest(required_bytes=20 * KIB))
        port = srv.server.metrics.start_http("127.0.0.1", 0)
        try:
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            )
        finally:
            srv.server.metrics.stop_http()
    assert "talklike_disk_used_bytes{" in body
    assert "talklike_disk_evictions_total 1.0" in body
