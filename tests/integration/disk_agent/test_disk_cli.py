"""``talklike disk status|clean|ensure|pin|unpin`` as a person runs them, against a real agent on loopback."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli_runner import serving, talklike
from click.testing import Result
from disk_manager.testing import KIB, make_model
from disk_manager.usage import tree_size
from talklike.disk_agent.servicer import create_service
from talklike.disk_agent.settings import DiskAgentSettings

NOW = time.time()


@pytest.fixture
async def cli_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """An agent over three 100 KiB models on a simulated volume with 20 KiB free."""
    home = tmp_path / "home"
    models = home / "models"
    for i, name in enumerate(["old", "mid", "new"]):
        make_model(models, name, 100 * KIB, NOW - 3000 + 1000 * i, config=False)
    used = tree_size(models)[0]
    settings = DiskAgentSettings(home=home, port=0, metrics_port=0, capacity_bytes=used + 20 * KIB)
    async with serving(create_service(settings), settings, "disk-agent") as env:
        yield env


async def disk(env: dict[str, str], *args: str) -> Result:
    return await talklike(env, "disk", *args)


async def test_status_then_a_planned_and_a_real_eviction(cli_env: dict[str, str]) -> None:
    models = Path(cli_env["TALKLIKE_HOME"]) / "models"
    status = await disk(cli_env, "status")
    assert status.exit_code == 0, status.output
    assert "LOW ON SPACE" in status.stdout and "(simulated)" in status.stdout
    order = [status.stdout.index(f"models:{n}") for n in ("old", "mid", "new")]
    assert order == sorted(order), "entries are listed least recently used first"

    plan = await disk(cli_env, "ensure", "150K", "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert "would evict" in plan.stdout and "models:old" in plan.stdout and "models:mid" in plan.stdout
    assert "models:new" not in plan.stdout and (models / "old").exists()

    done = await disk(cli_env, "ensure", "150K")
    assert done.exit_code == 0, done.output
    assert re.search(r"freed 200\.0 KiB; \d+\.\d KiB free now", done.stdout)
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == ["new"]


async def test_pins_hold_and_an_impossible_request_says_by_how_much(cli_env: dict[str, str]) -> None:
    models = Path(cli_env["TALKLIKE_HOME"]) / "models"
    pinned = await disk(cli_env, "pin", "models:old", "--ttl", "600", "--holder", "inference")
    assert pinned.exit_code == 0, pinned.output
    lease_id = pinned.stdout.rsplit("lease id", 1)[1].strip()
    status = (await disk(cli_env, "status")).stdout
    assert re.search(rf"models:old\s.*\sinference\s.*\s{lease_id}", status), status  # the pins table

    refused = await disk(cli_env, "ensure", "300K")
    assert refused.exit_code == 1
    assert "short by" in refused.output and "models:old (pinned)" in refused.output
    assert "talklike disk unpin" in refused.output and "Traceback" not in refused.output
    assert len([p for p in models.iterdir() if not p.name.startswith(".")]) == 3  # nothing deleted

    assert (await disk(cli_env, "unpin", lease_id)).exit_code == 0
    again = await disk(cli_env, "unpin", lease_id)
    assert again.exit_code == 1 and "already released or has expired" in again.output
    assert (await disk(cli_env, "ensure", "300K")).exit_code == 0
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == []


async def test_bad_input_is_one_sentence_and_a_fix(cli_env: dict[str, str]) -> None:
    size = await disk(cli_env, "ensure", "lots")
    assert size.exit_code == 1 and "cannot read 'lots' as a size" in size.output and "fix:" in size.output
    outside = await disk(cli_env, "ensure", "1K", "--volume", "/etc")
    assert outside.exit_code == 1 and "outside the managed roots" in outside.output
    key = await disk(cli_env, "pin", "whatever")
    assert key.exit_code == 1 and "key:" in key.output and "correct `key`" in key.output
    kind = await disk(cli_env, "clean", "--kind", "models")
    assert kind.exit_code == 1 and "kinds:" in kind.output
    clean = await disk(cli_env, "clean", "--dry-run")
    assert clean.exit_code == 0 and "would free 0 B" in clean.stdout


async def test_no_agent_running_is_said_with_the_fix(tmp_path: Path) -> None:
    env = {"TALKLIKE_HOME": str(tmp_path), "TALKLIKE_DISK_AGENT_ADDRESS": "127.0.0.1:9", "COLUMNS": "200"}
    result = await disk(env, "status")
    assert result.exit_code == 1 and "cannot reach the disk-agent service" in result.output
    assert "talklike up" in result.output
