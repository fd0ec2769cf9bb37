"""Stop sequences, time limits and deadlines on the inference service, through real gRPC on loopback.

Each case checks the contract a caller sees (the stop reason or the status code) and, where
the point is that work stops, the service's own Prometheus counters: no generation is left
holding a slot and no token is produced after the caller's limit passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from talklike.common.testing import RunningService, running_service
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc

#: Long enough that the tiny model is still generating when the limits below pass.
LONG = pb.SamplingParams(max_new_tokens=450, temperature=1.0, seed=1)


def settings_for(home: Path, **overrides: object) -> InferenceSettings:
    values: dict[str, object] = {
        "home": home,
        "base_model": "tiny",
        "port": 0,
        "metrics_port": 0,
        "http_port": 0,
    }
    values.update(overrides)
    return InferenceSettings(**values)  # type: ignore[arg-type]


async def serve_one_slot(home: Path, queue_timeout_ms: int) -> AsyncIterator[RunningService]:
    """One generation at a time and a queue of four: the second request must wait."""
    settings = settings_for(home, max_concurrency=1, max_queue=4, queue_timeout_ms=queue_timeout_ms)
    async with running_service(create_service(settings), settings) as srv:
        yield srv


@pytest.fixture
async def one_slot(tiny_home: Path) -> AsyncIterator[RunningService]:
    async for srv in serve_one_slot(tiny_home, queue_timeout_ms=300):
        yield srv


@pytest.fixture
async def short_queue(tiny_home: Path) -> AsyncIterator[RunningService]:
    """A queue timeout well inside the time a 450-token answer holds the slot.

    On 2 CPUs the tiny model streams 1,000-4,000 tokens/s, so LONG holds the slot for 0.1-0.5 s.
    """
    async for srv in serve_one_slot(tiny_home, queue_timeout_ms=60):
        yield srv


def sample(srv: RunningService, name: str, labels: dict[str, str] | None = None) -> float:
    return srv.server.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def wait_idle(srv: RunningService, within_s: float = 1.0) -> float:
    """Seconds until no generation holds a slot; fails past ``within_s``."""
    started = time.monotonic()
    while sample(srv, "talklike_inference_active_generations") != 0:
        assert time.monotonic() - started < within_s, "a generation still holds its slot"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_time_limit_ends_the_stream_with_time_limit(one_slot: RunningService) -> None:
    stub = pb_grpc.InferenceServiceStub(one_slot.channel())
    started = time.monotonic()
    messages = [
        m
        async for m in stub.GenerateStream(
            pb.GenerateStreamRequest(prompt="Brusel", sampling=LONG, time_limit_ms=50)
        )
    ]
    elapsed = time.monotonic() - started
    final = messages[-1]
    assert final.stop_reason == pb.STOP_REASON_TIME_LIMIT, pb.StopReason.Name(final.stop_reason)
    assert 0 < final.usage.completion_tokens < LONG.max_new_tokens and elapsed < 2.0
    assert "".join(m.text_delta for m in messages)

    unary = await stub.Generate(pb.GenerateRequest(prompt="Brusel", sampling=LONG, time_limit_ms=50))
    assert unary.stop_reason == pb.STOP_REASON_TIME_LIMIT and unary.text
    assert (
        sample(one_slot, "talklike_inference_requests_total", {"adapter": "", "stop_reason": "time_limit"})
        == 2
    )


async def test_a_queued_request_that_waits_too_long_gets_deadline_exceeded(
    short_queue: RunningService,
) -> None:
    stub = pb_grpc.InferenceServiceStub(short_queue.channel())
    holder = stub.GenerateStream(pb.GenerateStreamRequest(prompt="Brusel", sampling=LONG, time_limit_ms=3000))
    await holder.read()  # the slot is taken
    started = time.monotonic()
    waiting = asyncio.ensure_future(
        stub.Generate(pb.GenerateRequest(prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=4)))
    )
    await asyncio.sleep(0.02)
    assert sample(short_queue, "talklike_inference_queue_depth") == 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await waiting
    waited = time.monotonic() - started
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "in the queue" in (info.value.details() or "") and 0.05 < waited < 2.0
    # The gauge forgets the one that gave up.
    assert sample(short_queue, "talklike_inference_queue_depth") == 0
    holder.cancel()
    await wait_idle(short_queue)

    # The slot is free again: a request now runs at once.
    reply = await stub.Generate(
        pb.GenerateRequest(prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=4))
    )
    assert reply.usage.completion_tokens > 0


async def test_a_client_deadline_stops_generation_within_a_second(one_slot: RunningService) -> None:
    stub = pb_grpc.InferenceServiceStub(one_slot.channel())
    # A deadline about 60 tokens into the answer, timed on this machine right now.
    started = time.monotonic()
    first = await stub.Generate(
        pb.GenerateRequest(prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=60, seed=1))
    )
    # Twice the 60-token time, so a loaded machine still streams some tokens before the deadline;
    # well below the 7.5 times as long the 450-token answer takes, so the deadline cuts it mid-way.
    deadline_s = max(2 * (time.monotonic() - started), 0.08)
    assert first.usage.completion_tokens == 60
    received = 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _message in stub.GenerateStream(
            pb.GenerateStreamRequest(prompt="Brusel", sampling=LONG), timeout=deadline_s
        ):
            received += 1
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and received > 0
    assert await wait_idle(one_slot) < 1.0
    produced = sample(one_slot, "talklike_inference_generated_tokens_total", {"adapter": ""})
    await asyncio.sleep(0.3)
    assert sample(one_slot, "talklike_inference_generated_tokens_total", {"adapter": ""}) == produced
    assert 0 < produced - 60 < LONG.max_new_tokens  # the timing answer's 60 tokens counted first
    assert (
        sample(one_slot, "talklike_inference_requests_total", {"adapter": "", "stop_reason": "cancelled"})
        == 1
    )


async def test_a_stop_sequence_cuts_the_answer_before_it(one_slot: RunningService) -> None:
    """Greedy decoding gives the same tokens each time: cut a known answer at a piece from its middle."""
    stub = pb_grpc.InferenceServiceStub(one_slot.channel())
    greedy = pb.SamplingParams(max_new_tokens=40)
    full = (await stub.Generate(pb.GenerateRequest(prompt="Brusel", sampling=greedy))).text
    middle = len(full) // 2
    stop = full[middle : middle + 6]
    assert len(stop.strip()) >= 3, full
    expected = full[: full.index(stop)]

    cut = pb.SamplingParams(max_new_tokens=40, stop_sequences=["zzzz", stop])
    messages = [m async for m in stub.GenerateStream(pb.GenerateStreamRequest(prompt="Brusel", sampling=cut))]
    assert "".join(m.text_delta for m in messages) == expected
    assert messages[-1].stop_reason == pb.STOP_REASON_STOP_SEQUENCE
    assert messages[-1].usage.completion_tokens < 40
    unary = await stub.Generate(pb.GenerateRequest(prompt="Brusel", sampling=cut))
    assert unary.text == expected and unary.stop_reason == pb.STOP_REASON_STOP_SEQUENCE
