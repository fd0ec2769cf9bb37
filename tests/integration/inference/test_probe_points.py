"""Smaller points of the outside probe on inference (issue 15, cause 10).

- a pickled adapter (``adapter_model.bin``) is refused as FAILED_PRECONDITION saying it is not
  safetensors, before anything unpickles it (it used to end as INTERNAL);
- ``Tokenize {}`` is refused as ``Generate {}`` is (it used to count 0 tokens);
- the HTTP face compares the bearer token in constant time, as the gRPC side does.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
from talklike.common.testing import running_service
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc


class Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


async def test_pickle_adapter_and_empty_tokenize_are_refused_plainly(tiny_home: Path) -> None:
    pickled = tiny_home / "adapters" / "pickled"
    shutil.rmtree(pickled, ignore_errors=True)
    pickled.mkdir()
    shutil.copy(tiny_home / "adapters" / "persona" / "adapter_config.json", pickled)
    (pickled / "adapter_model.bin").write_bytes(pickle.dumps(Boom()))
    settings = InferenceSettings(home=tiny_home, base_model="tiny", port=0, metrics_port=0, http_port=0)
    try:
        await refusals(settings)
    finally:
        shutil.rmtree(pickled)  # the home is shared by the session's tests


async def refusals(settings: InferenceSettings) -> None:
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.InferenceServiceStub(srv.channel())
        with pytest.raises(grpc.aio.AioRpcError) as loading:
            await stub.LoadAdapter(pb.LoadAdapterRequest(name="pickled"))
        with pytest.raises(grpc.aio.AioRpcError) as generating:
            await stub.Generate(pb.GenerateRequest(prompt="Brusel", adapter="pickled"))
        with pytest.raises(grpc.aio.AioRpcError) as tokenizing:
            await stub.Tokenize(pb.TokenizeRequest())
        with pytest.raises(grpc.aio.AioRpcError) as empty_generate:
            await stub.Generate(pb.GenerateRequest())
    for caught in (loading, generating):
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
        assert "adapter_model.safetensors" in (caught.value.details() or "")
        assert "adapter_model.bin" in (caught.value.details() or "")
    assert tokenizing.value.code() == empty_generate.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert tokenizing.value.details() == empty_generate.value.details()


async def test_http_face_compares_the_token_in_constant_time(
    tiny_home: Path, monkeypatch: pytest.MonkeyPatch, free_port: Callable[[], int]
) -> None:
    import hmac

    compared: list[bytes] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr("talklike.common.auth.hmac.compare_digest", recording)
    port = free_port()
    settings = InferenceSettings(
        home=tiny_home, base_model="tiny", port=0, metrics_port=0, http_port=port, auth_token="s3cret"
    )
    async with running_service(create_service(settings), settings), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/v1/models"
        async with session.get(url, headers={"Authorization": "Bearer wrong"}) as refused:
            assert refused.status == 401
        async with session.get(url, headers={"Authorization": "Bearer s3cret"}) as accepted:
            assert accepted.status == 200
    assert b"Bearer wrong" in compared and b"Bearer s3cret" in compared
