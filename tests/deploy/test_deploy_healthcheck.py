"""The images' health check (deploy/healthcheck.py) against a real disk-agent server on loopback.

Docker runs it inside the container, so it must tell which service it guards from PID 1's
command line and report readiness: healthy only while the service is SERVING.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from deploy_helpers import ROOT
from grpc_health.v1 import health_pb2
from talklike.common.testing import running_service
from talklike.disk_agent.servicer import create_service
from talklike.disk_agent.settings import DiskAgentSettings

SCRIPT = ROOT / "deploy" / "healthcheck.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("talklike_healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load()
TALKLIKE = ["/opt/talklike/bin/python", "/opt/talklike/bin/talklike"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([*TALKLIKE, "serve", "disk-agent"], ("disk-agent", None)),
        ([*TALKLIKE, "serve", "inference", "--port", "6000"], ("inference", 6000)),
        (["/sbin/docker-init", "--", *TALKLIKE, "serve", "training", "--port=6001"], ("training", 6001)),
        ([*TALKLIKE, "--help"], (None, None)),
    ],
    ids=["plain", "port-option", "under-docker-init", "not-serving"],
)
def test_reads_the_service_from_the_command_line(
    argv: list[str], expected: tuple[str | None, int | None]
) -> None:
    assert healthcheck.served_by(argv) == expected


def test_port_comes_from_the_command_line_then_the_environment_then_the_registry() -> None:
    pid1 = [*TALKLIKE, "serve", "generation"]
    assert healthcheck.target([], pid1, {}) == (
        "generation",
        "127.0.0.1:50051",
        "talklike.v1.GenerationService",
    )
    env = {"TALKLIKE_GENERATION_PORT": "7001"}
    assert healthcheck.target([], pid1, env)[1] == "127.0.0.1:7001"
    assert healthcheck.target([], [*pid1, "--port", "7002"], env)[1] == "127.0.0.1:7002"
    # An explicit name wins over PID 1 and uses that service's variable.
    assert healthcheck.target(["disk-agent"], pid1, {"TALKLIKE_DISK_AGENT_PORT": "7003"}) == (
        "disk-agent",
        "127.0.0.1:7003",
        "talklike.v1.DiskAgentService",
    )


def test_cannot_guess_a_service_it_is_not_told() -> None:
    with pytest.raises(LookupError, match="talklike-healthcheck NAME"):
        healthcheck.target([], ["/bin/sh"], {})
    with pytest.raises(KeyError, match="known: generation"):
        healthcheck.target(["generator"], [], {})


async def test_healthy_only_while_the_service_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = DiskAgentSettings(home=tmp_path, port=0, metrics_port=0)
    monkeypatch.setattr(healthcheck, "pid1_argv", lambda: [*TALKLIKE, "serve", "disk-agent"])
    async with running_service(create_service(settings), settings) as srv:
        monkeypatch.setenv("TALKLIKE_DISK_AGENT_PORT", str(srv.port))
        # The probe is a blocking gRPC call: run it off the loop that serves it.
        assert await asyncio.to_thread(healthcheck.main, []) == healthcheck.HEALTHY
        assert "disk-agent at 127.0.0.1" in capsys.readouterr().out
        # Draining (or still loading) reports NOT_SERVING on readiness: not healthy.
        await srv.server.health.set(settings.full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
        assert await asyncio.to_thread(healthcheck.main, []) == healthcheck.UNHEALTHY
        assert "NOT_SERVING" in capsys.readouterr().out
        port = srv.port
    # Nothing listening any more.
    assert await asyncio.to_thread(healthcheck.main, []) == healthcheck.UNHEALTHY
    assert "UNREACHABLE" in capsys.readouterr().out
    assert port


def test_runs_as_a_script_and_says_why_it_fails() -> None:
    # An unknown name fails at once with the known names, exit status 1 (Docker's "unhealthy").
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "generator"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "unknown service 'generator'" in result.stderr
