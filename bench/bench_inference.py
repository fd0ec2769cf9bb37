"""Inference throughput and overhead: gRPC vs the same backend in-process, batching, unary latency.

Baselines, each measured in the same run on the same loaded model (tiny by default):
  1. tokens/s through GenerateStream over loopback gRPC, from a client in its own process  vs
     InferenceCore.stream called in the server's process, at concurrency 1 and 8 (target ≥ 0.95×);
  2. throughput with 8 concurrent requests  vs  1 request at a time (dynamic batching, target ≥ 3×);
  3. p50 latency of a unary Tokenize call over gRPC  vs  the same call in-process (target: < 1 ms added).
Run with `.venv/bin/python bench/bench_inference.py` (transformers) or, for vLLM-CPU,
`.venv-vllm/bin/python bench/bench_inference.py --backend vllm`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import grpc
from talklike.common.service import ServiceBinding
from talklike.common.testing import running_service
from talklike.inference.backends import create_backend
from talklike.inference.core import InferenceCore
from talklike.inference.servicer import InferenceServicer
from talklike.inference.settings import InferenceSettings
from talklike.inference.types import ChatTurn, Prompt, Sampling
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc

QUESTION = "Jak hodnotíte inflaci a ceny energií?"
TOKENS = 64


async def in_process(core: InferenceCore, concurrency: int) -> float:
    prompt = Prompt(chat=(ChatTurn("user", QUESTION),))

    async def one(seed: int) -> int:
        count = 0
        async for event in core.stream(
            prompt, "", Sampling(max_new_tokens=TOKENS, temperature=1.0, seed=seed)
        ):
            count = event.completion_tokens
        return count

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(i) for i in range(concurrency))))
    return tokens / (time.perf_counter() - started)


async def over_grpc(stub: pb_grpc.InferenceServiceStub, concurrency: int) -> float:
    chat = pb.Conversation(
        messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content=QUESTION)]
    )

    async def one(seed: int) -> int:
        count = 0
        request = pb.GenerateStreamRequest(
            chat=chat, sampling=pb.SamplingParams(max_new_tokens=TOKENS, temperature=1.0, seed=seed)
        )
        async for message in stub.GenerateStream(request):
            count = message.completion_tokens
        return count

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(i) for i in range(concurrency))))
    return tokens / (time.perf_counter() - started)


async def best_of(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    return max([await fn() for _ in range(repeats)])


def client_process(address: str, concurrency: int, repeats: int) -> float:
    """The gRPC side as a real client: its own process and event loop, like any other tool."""

    async def run() -> float:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.InferenceServiceStub(channel)
            return max([await over_grpc(stub, concurrency) for _ in range(repeats)])

    return asyncio.run(run())


async def remote_best_of(address: str, concurrency: int) -> float:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await loop.run_in_executor(pool, client_process, address, concurrency, 3)


async def main(backend: str, base_model: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(
            home=Path(tmp),
            base_model=base_model,
            backend=backend,
            port=0,
            metrics_port=0,
            http_port=0,
            max_concurrency=8,
        )
        core = InferenceCore(settings, create_backend(settings))
        await core.start()
        binding = ServiceBinding(
            full_name=settings.full_name,
            register=lambda server: pb_grpc.add_InferenceServiceServicer_to_server(
                InferenceServicer(core), server
            ),
        )
        async with running_service(binding, settings) as srv:
            stub = pb_grpc.InferenceServiceStub(srv.channel())
            await in_process(core, 2)  # warm-up
            print(f"backend {backend}, model {base_model}, {TOKENS} tokens per request, best of 3")
            rates = {}
            for concurrency in (1, 8):
                local = await best_of(lambda c=concurrency: in_process(core, c))
                remote = await remote_best_of(srv.address, concurrency)
                rates[concurrency] = (local, remote)
                print(
                    f"concurrency {concurrency}: in-process {local:7.1f} tok/s, gRPC stream {remote:7.1f} tok/s, "
                    f"ratio gRPC/in-process {remote / local:.3f}x (target >= 0.95x)"
                )
            print(
                f"batching: 8 concurrent vs 1 at a time: {rates[8][1] / rates[1][1]:.2f}x through gRPC, "
                f"{rates[8][0] / rates[1][0]:.2f}x in-process (target >= 3x)"
            )
            chat = pb.Conversation(
                messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content=QUESTION)]
            )
            prompt = Prompt(chat=(ChatTurn("user", QUESTION),))
            local_ms, remote_ms = [], []
            for _ in range(300):
                started = time.perf_counter()
                core.backend.encode(prompt)
                local_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await stub.Tokenize(pb.TokenizeRequest(chat=chat))
                remote_ms.append((time.perf_counter() - started) * 1000)
            added = statistics.median(remote_ms) - statistics.median(local_ms)
            print(
                f"unary Tokenize p50: in-process {statistics.median(local_ms):.3f} ms, gRPC {statistics.median(remote_ms):.3f} ms, "
                f"added {added:.3f} ms (target < 1 ms)"
            )
        await core.backend.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    parser.add_argument("--base-model", default="tiny")
    args = parser.parse_args()
    asyncio.run(main(args.backend, args.base_model))
