"""The local stack's process management with real processes (the sample service stands in for the five)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.stack import ServiceSpec, Stack, format_uptime, parse_only, port_holder, spec_for
from talklike_sample_service import FULL_NAME

SCRIPT = str(Path(__file__).with_name("talklike_sample_service.py"))


def sample_spec(name: str, port: int, command: tuple[str, ...] | None = None) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        full_name=FULL_NAME,
        host="127.0.0.1",
        port=port,
        metrics_port=0,
        command=command or (sys.executable, SCRIPT, "5"),
        env={"TALKLIKE_SAMPLE_PORT": str(port)},
        port_variable="TALKLIKE_SAMPLE_PORT",
    )


def test_up_status_up_again_down(tmp_path: Path, free_port: Callable[[], int]) -> None:
    specs = [sample_spec("alpha", free_port()), sample_spec("beta", free_port())]
    stack = Stack(tmp_path / "home", specs)
    events: list[tuple[str, str]] = []
    try:
        states = stack.start(timeout_s=30, on_event=lambda name, what: events.append((name, what)))
        assert [(s.name, s.health) for s in states] == [("alpha", "SERVING"), ("beta", "SERVING")]
        pids = {s.name: s.pid for s in states}
        assert all(pids.values())
        assert stack.pid_file("alpha").exists() and stack.log_file("alpha").exists()
        assert json.loads(stack.pid_file("beta").read_text())["address"] == specs[1].address
        assert [s.health for s in stack.status()] == ["SERVING", "SERVING"]

        again = Stack(tmp_path / "home", specs).start(
            timeout_s=30, on_event=lambda n, w: events.append((n, w))
        )
        assert {s.name: s.pid for s in again} == pids, "up twice must not start duplicates"
        assert ("alpha", "already running") in events
    finally:
        stopped = stack.stop(timeout_s=15)
    assert [(s.name, s.note) for s in stopped] == [("alpha", "stopped"), ("beta", "stopped")]
    assert not list((tmp_path / "home" / "run").iterdir())
    for pid in pids.values():
        assert (pid is not None and not psutil.pid_exists(pid)) or psutil.Process(pid).status() == "zombie"
    assert [s.health for s in stack.status()] == ["stopped", "stopped"]
    assert [s.note for s in stack.stop()] == ["was not running", "was not running"]
    # The service drained and logged it: SIGTERM was graceful.
    assert "stopped talklike.test.Sample" in stack.log_file("alpha").read_text()


def test_taken_port_is_named_before_anything_starts(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert port_holder("127.0.0.1", port) is not None
        free = free_port()
        stack = Stack(tmp_path, [sample_spec("alpha", free), sample_spec("beta", port)])
        with pytest.raises(FailedPrecondition) as caught:
            stack.start(timeout_s=10)
    message = caught.value.message
    assert f"port {port} (beta TALKLIKE_SAMPLE_PORT)" in message
    assert f"(pid {os.getpid()})" in message
    assert "with TALKLIKE_SAMPLE_PORT" in message
    assert not stack.pid_file("alpha").exists(), "nothing may start when a port is taken"
    assert port_holder("127.0.0.1", free) is None


def test_port_0_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="set TALKLIKE_SAMPLE_PORT to a free port"):
        Stack(tmp_path, [sample_spec("alpha", 0)]).start(timeout_s=5)


def test_same_port_twice_is_refused(tmp_path: Path, free_port: Callable[[], int]) -> None:
    port = free_port()
    with pytest.raises(FailedPrecondition, match=f"both set to port {port}"):
        Stack(tmp_path, [sample_spec("alpha", port), sample_spec("beta", port)]).start(timeout_s=5)


def test_a_service_that_dies_shows_its_log_and_the_others_are_stopped(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    crash = (
        sys.executable,
        "-c",
        "import sys; print('boom: model file missing', file=sys.stderr); sys.exit(3)",
    )
    good = sample_spec("alpha", free_port())
    stack = Stack(tmp_path, [good, sample_spec("beta", free_port(), crash)])
    with pytest.raises(FailedPrecondition) as caught:
        stack.start(timeout_s=30)
    assert "beta exited with code 3 before it was ready" in caught.value.message
    assert "boom: model file missing" in caught.value.message
    assert not stack.pid_file("alpha").exists() and not stack.pid_file("beta").exists()
    assert [s.health for s in stack.status()] == ["stopped", "stopped"]


def test_a_service_that_never_gets_ready_times_out(tmp_path: Path, free_port: Callable[[], int]) -> None:
    hang = (sys.executable, "-c", "import time; print('loading...', flush=True); time.sleep(60)")
    stack = Stack(tmp_path, [sample_spec("alpha", free_port(), hang)])
    started = time.monotonic()
    with pytest.raises(FailedPrecondition) as caught:
        stack.start(timeout_s=1)
    assert time.monotonic() - started < 15
    assert "alpha was not ready on 127.0.0.1:" in caught.value.message
    assert "within 1 s (health: UNREACHABLE)" in caught.value.message
    assert "loading..." in caught.value.message
    assert not stack.pid_file("alpha").exists()


def test_stale_pid_file_is_removed(tmp_path: Path, free_port: Callable[[], int]) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    stack = Stack(tmp_path, [sample_spec("alpha", free_port())])
    stack.run_dir.mkdir(parents=True)
    record = {
        "name": "alpha",
        "pid": dead_pid,
        "create_time": 1.0,
        "address": "127.0.0.1:1",
        "full_name": FULL_NAME,
        "metrics_port": 0,
        "started_at": 1.0,
        "command": [],
    }
    stack.pid_file("alpha").write_text(json.dumps(record))
    assert [s.health for s in stack.status()] == ["stopped"]
    assert not stack.pid_file("alpha").exists()
    # A pid that is alive but belongs to another program (pid reuse) is stale too.
    record["pid"], record["create_time"] = os.getpid(), 1.0
    stack.pid_file("alpha").write_text(json.dumps(record))
    assert [s.health for s in stack.status()] == ["stopped"]
    stack.pid_file("alpha").write_text("{not json")
    assert [s.health for s in stack.status()] == ["stopped"]


def test_down_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); print(1, flush=True); time.sleep(60)",
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline()  # SIGTERM is ignored from here on
    stack = Stack(tmp_path, [sample_spec("alpha", 1)])
    stack.run_dir.mkdir(parents=True)
    record = {
        "name": "alpha",
        "pid": stubborn.pid,
        "create_time": psutil.Process(stubborn.pid).create_time(),
        "address": "127.0.0.1:1",
        "full_name": FULL_NAME,
        "metrics_port": 0,
        "started_at": time.time(),
        "command": [],
    }
    stack.pid_file("alpha").write_text(json.dumps(record))
    states = stack.stop(timeout_s=0.5)
    assert states[0].note.startswith("killed after")
    # The stack reaped it (it was this process's child), so only its absence can be checked.
    assert not psutil.pid_exists(stubborn.pid) or psutil.Process(stubborn.pid).status() == "zombie"
    assert not stack.pid_file("alpha").exists()


def test_parse_only_and_uptime() -> None:
    assert parse_only(None) == ["generation", "moderation", "training", "inference", "disk-agent"]
    assert parse_only("inference, generation") == ["generation", "inference"]
    with pytest.raises(InvalidArgument, match=r"unknown service.*nope"):
        parse_only("generation,nope")
    assert [format_uptime(s) for s in (None, 5, 185, 3725)] == ["", "5s", "3m05s", "1h02m"]


def test_every_listening_port_is_checked(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        spec = sample_spec("alpha", free_port())
        with_http = ServiceSpec(**{**spec.__dict__, "extra_ports": (("TALKLIKE_SAMPLE_HTTP_PORT", taken),)})
        with pytest.raises(FailedPrecondition, match=f"port {taken} \\(alpha TALKLIKE_SAMPLE_HTTP_PORT\\)"):
            Stack(tmp_path, [with_http]).start(timeout_s=5)


def test_spec_for_reads_the_settings_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_PORT", "6155")
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_METRICS_PORT", "6156")
    spec = spec_for("disk-agent")
    assert (spec.address, spec.full_name) == ("127.0.0.1:6155", "talklike.v1.DiskAgentService")
    assert ("TALKLIKE_DISK_AGENT_METRICS_PORT", 6156) in spec.extra_ports
    assert spec.command[-2:] == ("serve", "disk-agent")
