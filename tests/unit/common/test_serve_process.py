"""``serve()`` in a real process: SIGTERM during a long call lets the call finish, then exit 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from talklike_sample_service import method

SCRIPT = Path(__file__).with_name("talklike_sample_service.py")


def start_sample(grace_s: float) -> tuple[subprocess.Popen[str], int, list[dict[str, object]]]:
    """Start the sample service; returns the process, its port and its log entries so far."""
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(grace_s)], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    entries: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        entry = json.loads(line)
        entries.append(entry)
        if str(entry["message"]).startswith("serving"):
            return process, int(entry["port"]), entries  # type: ignore[call-overload]
    process.kill()
    raise AssertionError(f"the sample service did not start: {entries}")


def test_sigterm_during_a_long_call_finishes_the_call_and_exits_0() -> None:
    process, port, entries = start_sample(grace_s=20)
    result: dict[str, object] = {}

    def call() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                result["reply"] = channel.unary_unary(method("Sleep"))(b"1.5", timeout=30)
            except grpc.RpcError as error:
                result["error"] = error

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.4)  # the call is in flight on the server by now (loopback: well under a millisecond)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    caller.join(30)
    assert result == {"reply": b"done"}
    assert process.wait(30) == 0
    assert time.monotonic() - started < 10
    assert process.stderr is not None
    entries += [json.loads(line) for line in process.stderr.read().splitlines() if line.strip()]
    messages = [str(e["message"]) for e in entries]
    assert any(m.startswith("received SIGTERM") for m in messages), messages
    assert any(m.startswith("draining: 1 call(s) in flight") for m in messages), messages
    assert messages[-1].startswith("stopped"), messages


def test_sigint_with_nothing_in_flight_exits_0_at_once() -> None:
    process, _, _ = start_sample(grace_s=20)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(15) == 0
    assert time.monotonic() - started < 5
