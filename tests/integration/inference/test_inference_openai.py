"""The OpenAI backend against a local HTTP server that implements OpenAI's documented
``POST /v1/chat/completions`` with ``stream: true`` (server-sent events of
``chat.completion.chunk`` objects, ending with ``data: [DONE]``), on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from loopback_http import serve_post
from talklike.common.errors import FailedPrecondition
from talklike.common.testing import running_service
from talklike.inference.backends.openai_backend import OpenAIBackend
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc


@pytest.fixture
async def fake_openai() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        assert request.headers["Authorization"] == "Bearer sk-test"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = ["To ", "je ", "kampaň! ", f"({body['model']})"]
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {"index": 0, "delta": {"content": word}, "finish_reason": "stop" if last else None}
                ],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async with serve_post("/v1/chat/completions", completions) as base_url:
        yield base_url, seen


async def test_generates_through_openai_and_serves_fine_tuned_models(
    fake_openai: tuple[str, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, seen = fake_openai
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    adapter = tmp_path / "adapters" / "babis-ft"
    adapter.mkdir(parents=True)
    (adapter / "adapter_manifest.json").write_text(
        json.dumps({"fine_tuned_model": "ft:gpt-4o-mini:talklike::abc"})
    )
    settings = InferenceSettings(
        home=tmp_path,
        backend="openai",
        base_model="gpt-4o-mini",
        openai_base_url=base_url,
        port=0,
        metrics_port=0,
        http_port=0,
        preload_adapters="babis-ft",
    )
    chat = pb.Conversation(
        messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content="Jak hodnotíte inflaci?")]
    )
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.InferenceServiceStub(srv.channel())
        base = await stub.Generate(
            pb.GenerateRequest(chat=chat, sampling=pb.SamplingParams(max_new_tokens=20, seed=1))
        )
        deltas = [
            m async for m in stub.GenerateStream(pb.GenerateStreamRequest(chat=chat, adapter="babis-ft"))
        ]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Score(pb.ScoreRequest(chat=chat, text="x"))
    assert base.text == "To je kampaň! (gpt-4o-mini)" and base.stop_reason == pb.STOP_REASON_EOS
    assert base.usage.completion_tokens > 0 and base.usage.prompt_tokens > 0
    assert "".join(m.text_delta for m in deltas) == "To je kampaň! (ft:gpt-4o-mini:talklike::abc)"
    assert deltas[-1].stop_reason == pb.STOP_REASON_EOS
    assert seen[0]["messages"] == [{"role": "user", "content": "Jak hodnotíte inflaci?"}]
    assert seen[0]["max_completion_tokens"] == 20 and seen[0]["seed"] == 1 and seen[0]["stream"] is True
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_missing_key_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backend = OpenAIBackend(InferenceSettings(home=tmp_path, backend="openai", base_model="gpt-4o-mini"))
    with pytest.raises(FailedPrecondition, match="OPENAI_API_KEY"):
        await backend.start()
