"""The disk agent's client and the training service's disk guard, against a real agent on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from disk_manager.testing import KIB, make_model
from disk_manager.usage import tree_size
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.common.testing import running_service
from talklike.disk_agent.client import DiskAgentClient
from talklike.disk_agent.servicer import create_service
from talklike.disk_agent.settings import DiskAgentSettings
from talklike.training.data import JobError
from talklike.training.disk import ensure_free

NOW = time.time()


@pytest.fixture
async def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    """A nearly full models cache of four 100 KiB models, its agent's address in the environment."""
    models = tmp_path / "home" / "models"
    for i, name in enumerate(["oldest", "older", "newer", "newest"]):
        make_model(models, name, 100 * KIB, NOW - 4000 + 1000 * i, config=False)
    settings = DiskAgentSettings(
        home=tmp_path / "home", port=0, metrics_port=0, capacity_bytes=tree_size(models)[0] + 30 * KIB
    )
    async with running_service(create_service(settings), settings) as srv:
        monkeypatch.setenv("TALKLIKE_DISK_AGENT_ADDRESS", srv.address)
        yield models


def _ensure(required_bytes: int) -> object:
    with DiskAgentClient() as agent:
        return agent.ensure_free(required_bytes)


async def test_the_client_returns_what_was_evicted_and_raises_domain_errors(models: Path) -> None:
    room = await asyncio.to_thread(_ensure, 150 * KIB)
    assert room == type(room)(room.freed_bytes, ("models:oldest", "models:older"), room.free_bytes, ())
    assert room.free_bytes >= 150 * KIB and room.freed_bytes > 0
    with pytest.raises(InvalidArgument) as bad:
        await asyncio.to_thread(_ensure, -1)
    assert bad.value.field == "required_bytes"
    with pytest.raises(FailedPrecondition):
        await asyncio.to_thread(_ensure, 10_000 * KIB)


async def test_the_disk_guard_makes_room_or_refuses_the_job(models: Path) -> None:
    line = await asyncio.to_thread(ensure_free, 150 * KIB, "the adapter")
    assert (
        line
        == f"disk agent made room for the adapter: {150 * KIB} bytes free (evicted models:oldest, models:older)"
    )
    with pytest.raises(JobError) as refused:
        await asyncio.to_thread(ensure_free, 10_000 * KIB, "the adapter")
    assert refused.value.code == "insufficient_disk" and "unpin or delete models" in refused.value.message


def test_without_an_agent_the_guard_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_ADDRESS", "127.0.0.1:9")
    assert "disk agent not reachable at 127.0.0.1:9" in ensure_free(1, "the adapter")
