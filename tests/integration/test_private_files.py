"""What the services write in the data home is the owner's alone: 0600 files, 0700 folders (issue 15, cause 9).

Real ``talklike serve`` processes, as ``talklike up`` starts them, so that the process-wide
setting is what is tested: the generation service writes a dataset, the training service its
jobs.db; the stack's log files are created private too.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from talklike.common.paths import open_private_append
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc


@contextmanager
def serving(name: str, home: Path, port: int) -> Iterator[str]:
    prefix = f"TALKLIKE_{name.upper().replace('-', '_')}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKLIKE_")}
    env.update({"TALKLIKE_HOME": str(home), f"{prefix}PORT": str(port), f"{prefix}METRICS_PORT": "0"})
    process = subprocess.Popen(
        [sys.executable, "-m", "talklike.cli.main", "serve", name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline and process.poll() is None, f"{name} did not start"
                    time.sleep(0.2)
        yield address
    finally:
        process.terminate()
        process.wait(30)


def modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_datasets_and_the_job_store_are_owner_only(tmp_path: Path, free_port: Callable[[], int]) -> None:
    home = tmp_path / "home"
    with serving("generation", home, free_port()) as address, grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        list(stub.GenerateDataset(pb.GenerateDatasetRequest(pack="puffington", count=20, out="private")))
    with serving("training", home, free_port()):
        pass
    dataset = modes(home / "datasets" / "private")
    files = {k: v for k, v in dataset.items() if (home / "datasets" / "private" / k).is_file()}
    folders = {k: v for k, v in dataset.items() if k not in files}
    assert files and set(files.values()) == {"0o600"}, files
    assert set(folders.values()) == {"0o700"}, folders
    assert oct(stat.S_IMODE((home / "jobs.db").stat().st_mode)) == "0o600"


def test_stack_logs_are_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "generation.log"
    path.parent.mkdir()
    path.write_bytes(b"old\n")
    path.chmod(0o644)
    with open_private_append(path) as log:
        log.write(b"new\n")
    assert oct(stat.S_IMODE(path.stat().st_mode)) == "0o600"
    assert path.read_bytes() == b"old\nnew\n"
