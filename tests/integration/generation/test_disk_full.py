"""A full disk is RESOURCE_EXHAUSTED naming the volume and the bytes, never INTERNAL (issue 15, cause 8).

The probe filled a 20 MB tmpfs; here the same two situations are made without one: the volume
reports too little free space before the write (the run is refused before writing), and a write
fails with ENOSPC anyway (the space went elsewhere meanwhile). Nothing half-written stays.
"""

from __future__ import annotations

import errno
import shutil
from collections import namedtuple
from pathlib import Path
from typing import Any

import grpc
import pytest
from talklike.common.testing import running_service
from talklike.generation.servicer import create_service
from talklike.generation.settings import GenerationSettings
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc

Usage = namedtuple("Usage", "total used free")


async def generate(home: Path) -> grpc.aio.AioRpcError:
    settings = GenerationSettings(home=home, port=0, metrics_port=0)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.GenerationServiceStub(srv.channel())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.GenerateDataset(
                pb.GenerateDatasetRequest(pack="puffington", count=200, out="full")
            ):
                pass
    return caught.value


def leftovers(home: Path) -> list[str]:
    datasets = home / "datasets"
    return sorted(p.name for p in datasets.iterdir()) if datasets.exists() else []


async def test_too_little_free_space_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage

    def nearly_full(path: Any) -> Any:
        usage = real(path)
        return Usage(usage.total, usage.total - 20_000, 20_000) if str(tmp_path) in str(path) else usage

    monkeypatch.setattr("talklike.common.disk_space.shutil.disk_usage", nearly_full)
    error = await generate(tmp_path / "home")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    details = error.details() or ""
    assert "bytes needed on the volume /" in details and "20,000 free" in details
    assert leftovers(tmp_path / "home") == []


async def test_enospc_during_the_write_is_resource_exhausted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    error = await generate(tmp_path / "home")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "the volume / is full" in (error.details() or "") or "is full (No space left" in (
        error.details() or ""
    )
    assert leftovers(tmp_path / "home") == []
