"""The service's OpenAI key goes only to the endpoints its operator allowed (issue 15, cause 1).

A listener on loopback stands in for an endpoint a caller picks; it records the
``Authorization`` header of every request and answers 401, so each run ends quickly. Both RPCs
that take ``llm.base_url`` (GenerateDataset in LLM question mode, DraftPack) are driven for real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from loopback_http import api_error, serve_post
from talklike.common.testing import RunningService, running_service
from talklike.generation.servicer import create_service
from talklike.generation.settings import GenerationSettings
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc

KEY_ENV = "TALKLIKE_TEST_SERVICE_KEY"
SERVICE_KEY = "sk-service-secret"


@pytest.fixture
async def listener() -> AsyncIterator[tuple[list[str], str]]:
    seen: list[str] = []

    async def completions(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return api_error(401, "no", type="invalid_request_error")

    async with serve_post("/v1/chat/completions", completions) as base_url:
        yield seen, base_url


def generate(base_url: str, api_key: str = "") -> pb.GenerateDatasetRequest:
    return pb.GenerateDatasetRequest(
        pack="puffington",
        count=10,
        heldout_count=0,
        question_mode=pb.QUESTION_MODE_LLM,
        llm=pb.LlmOptions(base_url=base_url, model="m", api_key=api_key),
    )


def draft(base_url: str, api_key: str = "") -> pb.DraftPackRequest:
    return pb.DraftPackRequest(
        name="probe",
        description="An eccentric English inventor who answers journalists with gadgets.",
        template_count=10,
        llm=pb.LlmOptions(base_url=base_url, model="m", api_key=api_key),
    )


async def call(
    srv: RunningService, request: pb.GenerateDatasetRequest | pb.DraftPackRequest
) -> grpc.StatusCode:
    stub = pb_grpc.GenerationServiceStub(srv.channel())
    rpc = stub.GenerateDataset if isinstance(request, pb.GenerateDatasetRequest) else stub.DraftPack
    try:
        async for _ in rpc(request, timeout=30):  # type: ignore[operator]
            pass
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def settings_for(tmp_path: Path, **fields: object) -> GenerationSettings:
    return GenerationSettings(
        home=tmp_path / "home",
        port=0,
        metrics_port=0,
        llm_api_key_env=KEY_ENV,
        llm_backoff_s=0.01,
        llm_max_retries=0,
        **fields,  # type: ignore[arg-type]
    )


BUILDERS: list[Callable[..., pb.GenerateDatasetRequest | pb.DraftPackRequest]] = [generate, draft]


@pytest.fixture(autouse=True)
def service_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SERVICE_KEY)


@pytest.mark.parametrize("build", BUILDERS, ids=["GenerateDataset", "DraftPack"])
@pytest.mark.parametrize("allowed", [False, True], ids=["caller-endpoint", "allowed-endpoint"])
async def test_the_service_key_goes_only_to_allowed_endpoints(
    tmp_path: Path, listener: tuple[list[str], str], build: Callable[..., Any], allowed: bool
) -> None:
    seen, base_url = listener
    # The default allowed list is OpenAI's alone; a trailing slash names the same URL.
    settings = settings_for(tmp_path, **({"llm_base_urls": f"{base_url}/"} if allowed else {}))
    async with running_service(create_service(settings), settings) as srv:
        await call(srv, build(base_url))
        await call(srv, build(base_url, api_key="sk-callers-own"))
    assert seen, "the listener was never called"
    if allowed:
        assert all(header == f"Bearer {SERVICE_KEY}" for header in seen), seen
    else:
        assert all(SERVICE_KEY not in header for header in seen), seen
        assert "Bearer sk-callers-own" in seen


async def test_other_endpoints_can_be_refused(tmp_path: Path, listener: tuple[list[str], str]) -> None:
    seen, base_url = listener
    settings = settings_for(tmp_path, llm_other_endpoints=False)
    async with running_service(create_service(settings), settings) as srv:
        assert await call(srv, generate(base_url)) == grpc.StatusCode.PERMISSION_DENIED
        assert await call(srv, draft(base_url, api_key="k")) == grpc.StatusCode.PERMISSION_DENIED
        # A look-alike host or user info in the URL is not the allowed endpoint.
        for url in ("https://api.openai.com.evil.example/v1", f"https://api.openai.com/v1@{base_url[7:]}"):
            assert await call(srv, generate(url)) in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.INVALID_ARGUMENT,
            )
    assert seen == []
