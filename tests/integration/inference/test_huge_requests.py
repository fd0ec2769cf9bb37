"""Huge requests do not freeze inference (issue 15, cause 2).

The probe sent a 10 MB Tokenize or Score: the tokenizer ran on the event loop for 14-21 s and
health checks with a 2 s deadline timed out meanwhile. Now gRPC refuses a request over the
service's 1 MiB receive limit before reading it, the core refuses a prompt over its character
limit before tokenizing, and tokenizing runs on its own thread. Health is polled all along;
no answer may take more than 100 ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from talklike.common.limits import MAX_TEXT_CHARS
from talklike.common.testing import running_service
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc

TEN_MB = "inflace " * (10 * 1024 * 1024 // 8)
#: Under the character limit, far over the tiny model's context: tokenized (on its thread), then refused.
LONG = ("Pane předsedo, jak hodnotíte inflaci? " * 2000)[: MAX_TEXT_CHARS - 10]
HEALTH_LIMIT_S = 0.100


async def poll_health(channel: grpc.aio.Channel, latencies: list[float], stop: asyncio.Event) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    while not stop.is_set():
        started = time.perf_counter()
        await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.005)


def send_huge(address: str) -> list[grpc.StatusCode]:
    """Three 10 MB requests from another thread, as another client would (this loop is the server's)."""
    codes = []
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        calls = (
            lambda: stub.Tokenize(pb.TokenizeRequest(prompt=TEN_MB), timeout=5),
            lambda: stub.Score(pb.ScoreRequest(prompt="a", text=TEN_MB), timeout=5),
            lambda: stub.Generate(pb.GenerateRequest(prompt=TEN_MB), timeout=5),
        )
        for call in calls:
            try:
                call()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())  # type: ignore[attr-defined]
    return codes


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_huge_requests_never_delay_health_past_100_ms(
    tiny_home: Path, free_port: Callable[[], int]
) -> None:
    http_port = free_port()
    settings = InferenceSettings(
        home=tiny_home, base_model="tiny", port=0, metrics_port=0, http_port=http_port, torch_threads=1
    )
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.InferenceServiceStub(srv.channel())
        chat = pb.Conversation(
            messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content=LONG)]
        )
        latencies: list[float] = []
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_health(srv.channel(), latencies, stop))
        await asyncio.sleep(0.05)
        small = stub.Generate(
            pb.GenerateRequest(prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=4)), timeout=5
        )
        huge = await asyncio.to_thread(send_huge, srv.address)
        long = [await code_of(stub.Score(pb.ScoreRequest(chat=chat, text=LONG), timeout=5)) for _ in range(3)]
        long += [await code_of(stub.Generate(pb.GenerateRequest(chat=chat), timeout=5)) for _ in range(3)]
        counted = await stub.Tokenize(pb.TokenizeRequest(prompt=LONG), timeout=5)
        async with aiohttp.ClientSession() as session:
            body = {"model": "tiny", "messages": [{"role": "user", "content": "x" * (MAX_TEXT_CHARS + 1)}]}
            async with session.post(f"http://127.0.0.1:{http_port}/v1/chat/completions", json=body) as reply:
                http_status = reply.status
        answer = await small
        stop.set()
        await poller
    assert huge == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3  # over the 1 MiB receive limit
    assert long == [grpc.StatusCode.INVALID_ARGUMENT] * 6  # over the tiny model's context
    assert counted.token_count > counted.max_context_tokens
    assert http_status == 400
    assert answer.usage.completion_tokens >= 1
    assert len(latencies) > 10
    assert max(latencies) < HEALTH_LIMIT_S, f"slowest health check {max(latencies) * 1000:.0f} ms"
