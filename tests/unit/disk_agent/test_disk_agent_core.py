"""The disk agent's domain core on real files: its rules on top of disk_manager, and its errors.

The library raises its own errors; the agent turns each into the domain error the runtime maps
to a status code. These tests pin that translation (field names, the shortfall in bytes) and
the rules the agent adds: managed volumes only, bounded pins, allowed migration targets, and
the watermark events of WatchUsage.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from unittest.mock import patch

import pytest
from disk_manager.testing import KIB, make_model
from disk_manager.usage import tree_size
from talklike.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from talklike.disk_agent.core import DiskAgent, UsageEvent, crossings
from talklike.disk_agent.servicer import DiskCollector
from talklike.disk_agent.settings import DiskAgentSettings

NOW = time.time()


def agent_for(tmp_path: Path, headroom: int = 0) -> DiskAgent:
    """An agent over ``<tmp>/home/models`` holding three 100 KiB models, ``headroom`` bytes free."""
    models = tmp_path / "home" / "models"
    for i, name in enumerate(["a", "b", "c"]):
        make_model(models, name, 100 * KIB, NOW - 3000 + 1000 * i, config=False)
    settings = DiskAgentSettings(
        home=tmp_path / "home",
        port=0,
        metrics_port=0,
        capacity_bytes=tree_size(models)[0] + headroom,
        migration_targets=str(tmp_path / "nfs"),
    )
    return DiskAgent(settings)


async def test_sizes_are_checked_and_named_by_their_field(tmp_path: Path) -> None:
    agent = agent_for(tmp_path)
    with pytest.raises(InvalidArgument) as negative:
        await agent.ensure_free("", -1, dry_run=False)
    assert negative.value.field == "required_bytes" and "must not be negative" in negative.value.reason
    with pytest.raises(InvalidArgument) as absurd:
        await agent.ensure_free("", 1 << 51, dry_run=False)
    assert absurd.value.field == "required_bytes" and "absurd" in absurd.value.reason
    assert agent.evictions == 0


async def test_only_managed_volumes_may_be_named(tmp_path: Path) -> None:
    agent = agent_for(tmp_path, headroom=200 * KIB)
    for outside in ("/etc", str(tmp_path), str(tmp_path / "home" / "models" / ".." / "datasets")):
        with pytest.raises(PermissionDenied, match="outside the managed roots"):
            await agent.ensure_free(outside, 1, dry_run=True)
    inside = str(tmp_path / "home" / "models" / "hf")
    assert (await agent.ensure_free(inside, 100 * KIB, dry_run=True)).removed == []  # already free


async def test_an_impossible_request_is_a_failed_precondition_with_the_exact_shortfall(
    tmp_path: Path,
) -> None:
    agent = agent_for(tmp_path, headroom=10 * KIB)
    await agent.pin("models:a", 60, "test")
    free = agent.manager.free_bytes()  # the 10 KiB headroom less the pin's own state file
    assert 0 < free <= 10 * KIB
    with pytest.raises(FailedPrecondition) as info:
        await agent.ensure_free("", 250 * KIB, dry_run=False)
    # free + b and c (200 KiB) is all that is reachable; a is named as held back.
    shortfall = 250 * KIB - (free + 200 * KIB)
    assert f"short by {shortfall} bytes" in info.value.message and "models:a (pinned)" in info.value.message
    assert sorted(p.name for p in (tmp_path / "home" / "models").iterdir() if p.name[0] != ".") == [
        "a",
        "b",
        "c",
    ]
    removal = await agent.ensure_free("", 150 * KIB, dry_run=False)
    assert removal.removed == ["models:b", "models:c"]
    assert (agent.evictions, agent.evicted_bytes) == (2, removal.freed_bytes)


async def test_dry_runs_do_not_count_as_evictions(tmp_path: Path) -> None:
    agent = agent_for(tmp_path)
    removal = await agent.ensure_free("", 50 * KIB, dry_run=True)
    assert removal.removed == ["models:a"] and (tmp_path / "home" / "models" / "a").exists()
    assert agent.evictions == 0 and agent.evicted_bytes == 0


@pytest.mark.parametrize(
    ("key", "ttl_s", "field"),
    [
        ("nonsense", 60, "key"),
        ("pip:whatever", 60, "key"),
        ("models:", 60, "key"),
        ("models:a", 0, "ttl_seconds"),
        ("models:a", 7 * 24 * 3600 + 1, "ttl_seconds"),
    ],
)
async def test_pins_are_bounded(tmp_path: Path, key: str, ttl_s: int, field: str) -> None:
    agent = agent_for(tmp_path)
    with pytest.raises(InvalidArgument) as info:
        await agent.pin(key, ttl_s, "test")
    assert info.value.field == field
    assert agent.manager.state.pinned_keys() == set()


async def test_pin_before_download_and_unpin(tmp_path: Path) -> None:
    agent = agent_for(tmp_path)
    lease = await agent.pin("hf:models--org--not-downloaded-yet", 60, "training/job-1")
    assert lease.expires_at == pytest.approx(time.time() + 60, abs=5)
    assert agent.manager.state.pinned_keys() == {"hf:models--org--not-downloaded-yet"}
    assert await agent.unpin(lease.lease_id) and not await agent.unpin(lease.lease_id)
    with pytest.raises(InvalidArgument, match="lease_id"):
        await agent.unpin("")


async def test_cleanup_kinds_are_checked(tmp_path: Path) -> None:
    agent = agent_for(tmp_path)
    with pytest.raises(InvalidArgument) as info:
        await agent.cleanup(["models"], dry_run=True)
    assert info.value.field == "kinds"
    assert (await agent.cleanup([], dry_run=True)).removed == []  # no pip/conda/HF junk here


async def test_migration_goes_only_to_allowed_targets_and_waits_for_writers(tmp_path: Path) -> None:
    agent = agent_for(tmp_path)
    with pytest.raises(InvalidArgument, match="target_path"):
        await agent.migrate("", dry_run=True)
    with pytest.raises(PermissionDenied, match="not an allowed migration target"):
        await agent.migrate(str(tmp_path / "elsewhere"), dry_run=True)
    with pytest.raises(PermissionDenied):
        await agent.migrate(str(tmp_path / "nfs" / ".." / "elsewhere"), dry_run=True)
    planned = await agent.migrate(str(tmp_path / "nfs" / "cluster-a"), dry_run=True)
    assert planned.moved == {"models": str(tmp_path / "nfs" / "cluster-a" / "models")}

    models = tmp_path / "home" / "models"
    (models / ".locks").mkdir()
    (models / ".locks" / "b.lock").touch()
    with open(models / ".locks" / "b.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(FailedPrecondition, match="being written"):
            await agent.migrate(str(tmp_path / "nfs"), dry_run=False)
    assert not models.is_symlink()
    with patch.dict(os.environ):  # the agent exports the new places into its own environment
        moved = await agent.migrate(str(tmp_path / "nfs"), dry_run=False)
        assert os.environ["TALKLIKE_MODELS_DIR"] == str((tmp_path / "nfs" / "models").resolve())
    assert models.is_symlink() and moved.bytes_moved >= 300 * KIB
    assert (await agent.usage())[0].used_bytes >= 300 * KIB  # the agent still sees its cache


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        (0, 0, []),
        (0, 1, ["above_low"]),
        (0, 2, ["above_low", "above_high"]),
        (1, 2, ["above_high"]),
        (2, 1, ["below_high"]),
        (2, 0, ["below_high", "below_low"]),
        (1, 0, ["below_low"]),
    ],
)
def test_crossings_name_each_watermark_in_the_order_crossed(
    before: int, after: int, events: list[str]
) -> None:
    assert crossings(before, after) == events


async def next_event(stream: AsyncIterator[UsageEvent]) -> UsageEvent:
    return await asyncio.wait_for(anext(stream), 5)


async def test_watch_reports_each_watermark_crossing(tmp_path: Path) -> None:
    agent = agent_for(tmp_path, headroom=1000 * KIB)  # 300 KiB of 1300: below low
    stream = agent.watch(100)
    first = await next_event(stream)
    assert first.kind == "snapshot" and not first.volume.above_low

    agent.manager.capacity_bytes = 350 * KIB  # ~86 % used: both watermarks at once
    assert [(await next_event(stream)).kind for _ in range(2)] == ["above_low", "above_high"]
    agent.manager.capacity_bytes = 380 * KIB  # ~79 %: back under high only
    below_high = await next_event(stream)
    assert below_high.kind == "below_high" and below_high.volume.above_low
    await agent.ensure_free("", 200 * KIB, dry_run=False)  # evict two: ~26 %
    assert (await next_event(stream)).kind == "below_low"
    await stream.aclose()  # type: ignore[attr-defined]


async def test_watch_interval_is_bounded(tmp_path: Path) -> None:
    agent = agent_for(tmp_path)
    with pytest.raises(InvalidArgument, match="interval_ms"):
        await anext(agent.watch(50))


def test_collector_reports_usage_and_evictions(tmp_path: Path) -> None:
    agent = agent_for(tmp_path, headroom=0)
    agent.evictions, agent.evicted_bytes = 3, 4096
    families = {f.name: f for f in DiskCollector(agent).collect()}
    volume = str(tmp_path / "home" / "models")
    used = families["talklike_disk_used_bytes"].samples[0]
    assert used.labels == {"volume": volume} and used.value == tree_size(tmp_path / "home" / "models")[0]
    assert families["talklike_disk_free_bytes"].samples[0].value == 0
    assert families["talklike_disk_used_fraction"].samples[0].value == 1.0
    assert families["talklike_disk_evictions"].samples[0].value == 3
    assert families["talklike_disk_evicted_bytes"].samples[0].value == 4096
