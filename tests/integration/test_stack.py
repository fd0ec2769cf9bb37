"""The whole local stack: ``talklike up`` starts all five services, an independent client sees them.

Each service gets free ports through ``TALKLIKE_<NAME>_PORT`` / ``_METRICS_PORT`` so the test
never collides with a stack a developer runs. The client is a separate process using only
grpcio and the standard health/reflection protos (no talklike code), like grpcurl would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from talklike.common import registry

CLIENT = r"""
import json, sys
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

result = {}
for name, (address, full_name) in json.loads(sys.argv[1]).items():
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=full_name), timeout=10
        )
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]), timeout=10)
        services = sorted(s.name for reply in replies for s in reply.list_services_response.service)
    result[name] = {"health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status), "services": services}
print(json.dumps(result))
"""


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def talklike(*args: str, env: dict[str, str], timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "talklike.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.slow
def test_up_status_down_all_five(tmp_path: Path) -> None:
    names = list(registry.SERVICES)
    assert len(names) == 5
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKLIKE_")}
    env.update({"COLUMNS": "200", "TALKLIKE_INFERENCE_BASE_MODEL": "tiny"})
    ports = free_ports(2 * len(names) + 1)
    env["TALKLIKE_INFERENCE_HTTP_PORT"] = str(ports[-1])
    addresses = {}
    for index, name in enumerate(names):
        entry = registry.get(name)
        prefix = f"TALKLIKE_{name.replace('-', '_').upper()}_"
        env[prefix + "PORT"] = str(ports[2 * index])
        env[prefix + "METRICS_PORT"] = str(ports[2 * index + 1])
        addresses[name] = (f"127.0.0.1:{ports[2 * index]}", entry.full_name)

    up = talklike("up", "--home", str(home), "--timeout", "240", env=env)
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        pids = [json.loads((home / "run" / f"{name}.json").read_text())["pid"] for name in names]

        client = subprocess.run(
            [sys.executable, "-c", CLIENT, json.dumps(addresses)],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("TALKLIKE_")},
        )
        assert client.returncode == 0, client.stderr
        seen = json.loads(client.stdout)
        for name in names:
            assert seen[name]["health"] == "SERVING", (name, seen[name])
            assert registry.get(name).full_name in seen[name]["services"], (name, seen[name])
            assert "grpc.health.v1.Health" in seen[name]["services"]
            assert "grpc.reflection.v1alpha.ServerReflection" in seen[name]["services"]

        status = talklike("status", "--home", str(home), env=env, timeout_s=60)
        assert status.returncode == 0, status.stderr
        assert status.stdout.count("SERVING") == len(names), status.stdout

        again = talklike("up", "--home", str(home), env=env)
        assert again.returncode == 0, again.stderr
        assert again.stderr.count("already running") == len(names)
    finally:
        down = talklike("down", "--home", str(home), env=env, timeout_s=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("stopped") == len(names), down.stdout
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert not list((home / "run").glob("*.json"))
    stopped = talklike("status", "--home", str(home), env=env, timeout_s=60)
    assert stopped.returncode == 1 and "not serving" in stopped.stderr, stopped.stdout + stopped.stderr
