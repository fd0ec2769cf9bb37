"""The inference service on the tiny model through real gRPC on loopback.

Streaming and generation go through ``ReflectionClient``, which builds its messages from
server reflection only — an independent client, as other tools are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from reflection_client import ReflectionClient
from talklike.common.testing import RunningService, running_service
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc

QUESTION = {"messages": [{"role": common_pb2.CHAT_ROLE_USER, "content": "Jak hodnotíte inflaci?"}]}
USER = common_pb2.CHAT_ROLE_USER


def settings_for(home: Path, **overrides: object) -> InferenceSettings:
    values: dict[str, object] = {
        "home": home,
        "base_model": "tiny",
        "port": 0,
        "metrics_port": 0,
        "http_port": 0,
        "preload_adapters": "persona",
    }
    values.update(overrides)
    return InferenceSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def service(tiny_home: Path) -> AsyncIterator[RunningService]:
    settings = settings_for(tiny_home)
    async with running_service(create_service(settings), settings) as srv:
        yield srv


def stream_texts(address: str, adapter: str) -> tuple[str, object]:
    client = ReflectionClient(address)
    try:
        request = client.message(
            "GenerateStream", chat=QUESTION, adapter=adapter, sampling={"max_new_tokens": 24, "seed": 3}
        )
        parts, last = [], None
        for message in client.stream("GenerateStream", request):
            parts.append(message.text_delta)
            last = message
        return "".join(parts), last
    finally:
        client.close()


async def test_an_independent_client_streams_from_base_and_adapter(service: RunningService) -> None:
    base, base_last = await asyncio.to_thread(stream_texts, service.address, "")
    tuned, tuned_last = await asyncio.to_thread(stream_texts, service.address, "persona")
    assert base and tuned and base != tuned
    for last in (base_last, tuned_last):
        assert last.stop_reason in (pb.STOP_REASON_MAX_TOKENS, pb.STOP_REASON_EOS)  # type: ignore[attr-defined]
        assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0  # type: ignore[attr-defined]

    stub = pb_grpc.InferenceServiceStub(service.channel())
    unary = await stub.Generate(
        pb.GenerateRequest(
            chat=pb.Conversation(
                messages=[common_pb2.ChatMessage(role=USER, content="Jak hodnotíte inflaci?")]
            ),
            adapter="persona",
            sampling=pb.SamplingParams(max_new_tokens=24, seed=3),
        )
    )
    assert unary.text == tuned  # greedy: the same tokens unary and streamed


async def test_cancelling_mid_stream_stops_generation(service: RunningService) -> None:
    stub = pb_grpc.InferenceServiceStub(service.channel())
    call = stub.GenerateStream(
        pb.GenerateStreamRequest(
            prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=400, temperature=1.0, seed=1)
        )
    )
    received = 0
    async for _message in call:
        received += 1
        if received == 3:
            call.cancel()
            break
    registry = service.server.metrics.registry

    def generated() -> float | None:
        return registry.get_sample_value("talklike_inference_generated_tokens_total", {"adapter": ""})

    for _ in range(50):  # the backend notices within one decode step
        if registry.get_sample_value("talklike_inference_active_generations") == 0:
            break
        await asyncio.sleep(0.02)
    assert registry.get_sample_value("talklike_inference_active_generations") == 0
    produced = generated()
    await asyncio.sleep(0.5)
    assert generated() == produced and produced is not None and produced < 100
    assert (
        registry.get_sample_value(
            "talklike_inference_requests_total", {"adapter": "", "stop_reason": "cancelled"}
        )
        == 1
    )


async def test_bad_requests_get_clear_errors(service: RunningService) -> None:
    stub = pb_grpc.InferenceServiceStub(service.channel())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(pb.GenerateRequest(prompt="x", adapter="nobody"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "persona" in (info.value.details() or "")

    long_prompt = "inflace důchody daně " * 400
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(
            pb.GenerateRequest(prompt=long_prompt, sampling=pb.SamplingParams(max_new_tokens=16))
        )
    details = info.value.details() or ""
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tokens" in details and "limit of 512" in details

    for request, field in (
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(temperature=3)), "sampling.temperature"),
        (pb.GenerateRequest(), "input"),
        (pb.GenerateRequest(chat=pb.Conversation(messages=[common_pb2.ChatMessage(content="x")])), "role"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (info.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.LoadAdapter(pb.LoadAdapterRequest(name="evil", path="../../etc"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "outside" in (info.value.details() or "")


async def test_score_tokenize_list_load_unload(service: RunningService) -> None:
    stub = pb_grpc.InferenceServiceStub(service.channel())
    chat = pb.Conversation(messages=[common_pb2.ChatMessage(role=USER, content="Jak hodnotíte inflaci?")])
    base = await stub.Score(
        pb.ScoreRequest(chat=chat, text="To je kampaň! Andrej Babiš", include_token_logprobs=True)
    )
    tuned = await stub.Score(pb.ScoreRequest(chat=chat, text="To je kampaň! Andrej Babiš", adapter="persona"))
    assert base.token_count == tuned.token_count == len(base.tokens) > 0
    assert base.total_logprob < 0 and base.perplexity > 1 and base.total_logprob != tuned.total_logprob

    count = await stub.Tokenize(pb.TokenizeRequest(chat=chat, include_token_ids=True))
    assert count.token_count == len(count.token_ids) > 0 and count.max_context_tokens == 512

    models = await stub.ListModels(pb.ListModelsRequest())
    assert (
        models.base.source == "tiny"
        and models.base.backend == "transformers"
        and len(models.base.sha256) == 64
    )
    assert [a.name for a in models.adapters] == ["persona"] and "sha256" in models.adapters[0].manifest_json

    await stub.LoadAdapter(pb.LoadAdapterRequest(name="second", path="persona"))
    await stub.UnloadAdapter(pb.UnloadAdapterRequest(name="persona"))
    names = [a.name for a in (await stub.ListModels(pb.ListModelsRequest())).adapters]
    assert names == ["second"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UnloadAdapter(pb.UnloadAdapterRequest(name="persona"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_burst_over_capacity_is_refused_fast_and_the_admitted_finish(tiny_home: Path) -> None:
    settings = settings_for(tiny_home, max_concurrency=2, max_queue=2)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.InferenceServiceStub(srv.channel())

        async def one() -> str:
            try:
                reply = await stub.Generate(
                    pb.GenerateRequest(prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=40))
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return pb.StopReason.Name(reply.stop_reason)

        outcomes = await asyncio.gather(*(one() for _ in range(10)))
    refused = [o for o in outcomes if o == "RESOURCE_EXHAUSTED"]
    done = [o for o in outcomes if o in ("STOP_REASON_MAX_TOKENS", "STOP_REASON_EOS")]
    assert len(refused) + len(done) == 10, outcomes
    assert refused and len(done) >= 4


async def test_seeded_sampling_is_reproducible_with_every_knob(service: RunningService) -> None:
    stub = pb_grpc.InferenceServiceStub(service.channel())

    async def sample(seed: int) -> str:
        params = pb.SamplingParams(
            max_new_tokens=20,
            temperature=0.9,
            top_p=0.9,
            top_k=50,
            repetition_penalty=1.2,
            seed=seed,
            stop_sequences=["zzz"],
        )
        reply = await stub.Generate(pb.GenerateRequest(prompt="Brusel", sampling=params))
        assert reply.stop_reason in (pb.STOP_REASON_MAX_TOKENS, pb.STOP_REASON_EOS)
        return reply.text

    first, again, other = await asyncio.gather(sample(5), sample(5), sample(6))
    assert first == again and first != other


async def test_the_stream_interval_merges_tokens_into_fewer_messages_with_the_same_text(
    tiny_home: Path,
) -> None:
    """0 ms sends a message per token; a long interval sends the first token, then the rest at the end."""

    async def messages(interval_ms: int) -> list[pb.GenerateStreamResponse]:
        settings = settings_for(tiny_home, stream_interval_ms=interval_ms, preload_adapters="")
        async with running_service(create_service(settings), settings) as srv:
            stub = pb_grpc.InferenceServiceStub(srv.channel())
            request = pb.GenerateStreamRequest(
                prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=30, seed=1)
            )
            return [m async for m in stub.GenerateStream(request)]

    every, merged = await messages(0), await messages(1000)
    assert "".join(m.text_delta for m in every) == "".join(m.text_delta for m in merged)
    tokens = every[-1].usage.completion_tokens
    assert merged[-1].usage.completion_tokens == tokens
    # A delta per token, less the tokens that end half-way through a character (held back).
    assert len(every) >= tokens // 2
    assert len(merged) <= 3  # the first token's text (if it decoded to any), then the rest at the end


async def test_adapters_on_demand_load_from_the_store_at_first_use(tiny_home: Path) -> None:
    """A restarted service, or a replica that LoadAdapter never reached, serves what the store holds
    (the default); with on-demand loading off only loaded adapters are served."""
    request = pb.GenerateRequest(
        prompt="Brusel", adapter="persona", sampling=pb.SamplingParams(max_new_tokens=4)
    )
    settings = settings_for(tiny_home, preload_adapters="", adapters_on_demand=False)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.InferenceServiceStub(srv.channel())
        with pytest.raises(grpc.aio.AioRpcError) as off:
            await stub.Generate(request)
        assert off.value.code() == grpc.StatusCode.NOT_FOUND

    settings = settings_for(tiny_home, preload_adapters="")
    assert settings.adapters_on_demand
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.InferenceServiceStub(srv.channel())
        replies = await asyncio.gather(*(stub.Generate(request) for _ in range(3)))
        assert all(r.usage.completion_tokens for r in replies)
        listed = await stub.ListModels(pb.ListModelsRequest())
        assert [a.name for a in listed.adapters] == ["persona"]  # loaded once for the three
        for name, code in (("nowhere", "NOT_FOUND"), ("../persona", "INVALID_ARGUMENT")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Generate(pb.GenerateRequest(prompt="Brusel", adapter=name))
            assert caught.value.code().name == code, (name, caught.value.details())
