"""Continuous batching and the prefix cache on the tiny model, in-process (the core over the transformers backend).

A request joins the running batch at the next decode step instead of waiting for the others'
answers; a row that leaves (cancelled) changes nobody else's tokens; and reusing the cached KV
of a shared system prompt changes no token either (greedy, compared with runs without it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from talklike.inference.backends.transformers_backend import BASE, TransformersBackend
from talklike.inference.core import InferenceCore
from talklike.inference.types import ChatTurn, GenerationRequest, Prompt, Sampling, StopReason
from test_inference_limits import settings_for

#: Sampled (temperature 1, seed 1) so the tiny model does not hit its end of turn early: 450 tokens.
LONG = Sampling(max_new_tokens=450, temperature=1.0, seed=1)
SYSTEM = "Jsi satirická parodie politika Andreje Babiše: hovorová čeština se slovenskými chybami, sebechvála."
QUESTIONS = ("Jak hodnotíte inflaci?", "Co říkáte na Brusel?", "A důchody?", "Proč kampaň?")


async def started(home: Path, **overrides: object) -> InferenceCore:
    settings = settings_for(home, **overrides)
    core = InferenceCore(settings, TransformersBackend(settings))
    await core.start()
    return core


@pytest.fixture
async def core(tiny_home: Path) -> AsyncIterator[InferenceCore]:
    core = await started(tiny_home, preload_adapters="persona")
    yield core
    await core.backend.close()


def prefix_metric(core: InferenceCore) -> Callable[..., float]:
    """Reads one of the core's prefix cache metrics (0 when it has no sample)."""
    registry = CollectorRegistry()
    for collector in core.metrics.collectors():
        registry.register(collector)  # type: ignore[arg-type]

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return registry.get_sample_value(f"talklike_inference_prefix_cache_{name}", labels) or 0.0

    return sample


async def token_ids(core: InferenceCore, prompt: Prompt, adapter: str, sampling: Sampling) -> list[int]:
    """The ids the backend generates for a prompt (the core's own tokenization)."""
    request = GenerationRequest("t", tuple(core.backend.encode(prompt)), adapter, sampling, prompt=prompt)
    ids: list[int] = []
    async for chunk in core.backend.generate(request):
        ids += chunk.token_ids
    return ids


async def test_a_late_request_gets_its_first_token_before_an_earlier_long_one_finishes(
    core: InferenceCore,
) -> None:
    prompt = Prompt(raw="Brusel")
    long_done = asyncio.get_running_loop().create_future()
    long_tokens = 0

    async def long_one() -> None:
        nonlocal long_tokens
        async for event in core.stream(prompt, "", LONG):
            long_tokens = event.completion_tokens
            if event.stop is not None:
                long_done.set_result((event.stop, time.monotonic()))

    task = asyncio.create_task(long_one())
    while long_tokens == 0:  # the long one is decoding
        await asyncio.sleep(0.001)
    tokens_before = long_tokens
    first_at = 0.0
    async for event in core.stream(prompt, "persona", Sampling(max_new_tokens=8)):
        if not first_at and event.completion_tokens:
            first_at = time.monotonic()
            tokens_then = long_tokens
    await task
    stop, long_finished_at = long_done.result()
    assert stop is StopReason.MAX_TOKENS  # the long answer ran its full length
    assert first_at < long_finished_at
    # It joined within a few steps, not after the rest of the long answer.
    assert tokens_then - tokens_before < LONG.max_new_tokens // 4, (tokens_before, tokens_then)


async def test_cancelling_one_row_does_not_change_the_others_tokens(core: InferenceCore) -> None:
    greedy = Sampling(max_new_tokens=40)
    prompts = [Prompt(raw=q) for q in QUESTIONS]
    adapters = ["", "persona", "", "persona"]
    alone = [await token_ids(core, p, a, greedy) for p, a in zip(prompts, adapters, strict=True)]

    async def cancelled_after(count: int) -> int:
        request = GenerationRequest("x", tuple(core.backend.encode(Prompt(raw="Brusel"))), "", LONG)
        got = 0
        chunks = core.backend.generate(request)
        async for chunk in chunks:
            got += len(chunk.token_ids)
            if got >= count:
                break
        await chunks.aclose()
        return got

    async def joining_later(index: int) -> list[int]:
        await asyncio.sleep(0.005 * index)  # joins a batch that is already decoding
        return await token_ids(core, prompts[index], adapters[index], greedy)

    together = await asyncio.gather(
        cancelled_after(3), cancelled_after(10), *(joining_later(i) for i in range(len(prompts)))
    )
    assert together[2:] == alone
    assert all(together[:2])


async def test_the_prefix_cache_gives_the_same_greedy_tokens_as_none(tiny_home: Path) -> None:
    chats = [Prompt(chat=(ChatTurn("system", SYSTEM), ChatTurn("user", q))) for q in QUESTIONS]
    greedy = Sampling(max_new_tokens=32)
    answers = {}
    for entries in (0, 8):
        core = await started(tiny_home, preload_adapters="persona", prefix_cache_entries=entries)
        try:
            runs = []
            for _ in range(2):  # the second round reuses what the first cached
                for adapter in ("", "persona"):
                    runs.append(
                        await asyncio.gather(*(token_ids(core, chat, adapter, greedy) for chat in chats))
                    )
                    runs.append([await token_ids(core, chat, adapter, greedy) for chat in chats])
            answers[entries] = runs
            sample = prefix_metric(core)
            hits, misses = (
                sample("lookups_total", {"result": "hit"}),
                sample("lookups_total", {"result": "miss"}),
            )
            reused, entries_held = sample("reused_tokens_total"), sample("entries")
        finally:
            await core.backend.close()
        if entries:
            assert hits >= 12 and misses <= 8  # each (adapter, system prompt) computed about once
            assert reused > 0 and entries_held == 2  # one system prompt, under the base model and the adapter
        else:
            assert hits == misses == entries_held == 0
    assert answers[8] == answers[0]
    assert answers[0][0] != answers[0][2]  # the adapter answers differently: its KV is not the base's


async def test_a_newcomer_whose_prefill_fails_ends_alone(core: InferenceCore) -> None:
    """An adapter the backend does not hold fails that request's prefill; the running row goes on."""
    prompt = Prompt(raw="Brusel")
    long_request = GenerationRequest("long", tuple(core.backend.encode(prompt)), "", LONG)
    chunks = core.backend.generate(long_request)
    first = await chunks.__anext__()
    assert first.token_ids
    broken = GenerationRequest("bad", long_request.prompt_ids, "nobody", Sampling(max_new_tokens=4))
    stops = [chunk.stop async for chunk in core.backend.generate(broken)]
    assert stops[-1] is StopReason.ERROR
    rest = [chunk async for chunk in chunks]
    assert rest[-1].stop is StopReason.MAX_TOKENS
    assert len(first.token_ids) + sum(len(c.token_ids) for c in rest) == LONG.max_new_tokens


async def test_the_output_layer_gets_one_contiguous_block_in_a_batched_prefill(core: InferenceCore) -> None:
    """Four prompts prefilled together keep only their last positions: a strided view, which
    torch multiplies by a large vocabulary very slowly (the backend's pre-hook makes it one block)."""
    seen: list[tuple[int, bool]] = []

    def record(module: object, args: tuple[object, ...]) -> None:
        hidden = args[0]
        seen.append((hidden.shape[0], hidden.is_contiguous()))  # type: ignore[attr-defined]

    handle = core.backend.base_model.get_output_embeddings().register_forward_pre_hook(record)
    try:
        greedy = Sampling(max_new_tokens=2)
        await asyncio.gather(*(token_ids(core, Prompt(raw=q), "", greedy) for q in QUESTIONS))
    finally:
        handle.remove()
    assert max(rows for rows, _ in seen) > 1  # the prompts were prefilled (or decoded) as one batch
    assert all(contiguous for _, contiguous in seen)


async def test_bfloat16_weights_serve_the_base_and_an_adapter(tiny_home: Path) -> None:
    """dtype bfloat16 (what auto picks on a CPU with bf16 instructions): the base weights in bf16,
    the adapter's LoRA weights in fp32 as trained, and the adapter still changes the answers."""
    chats = [Prompt(chat=(ChatTurn("system", SYSTEM), ChatTurn("user", q))) for q in QUESTIONS]
    greedy = Sampling(max_new_tokens=16)
    core = await started(tiny_home, preload_adapters="persona", dtype="bfloat16")
    try:
        assert core.backend.dtype == "bfloat16"
        runs = {}
        for adapter in ("", "persona"):
            runs[adapter] = await asyncio.gather(*(token_ids(core, chat, adapter, greedy) for chat in chats))
        kinds = {(("lora_" in name), str(p.dtype)) for name, p in core.backend.model.named_parameters()}
        assert kinds == {(False, "torch.bfloat16"), (True, "torch.float32")}
    finally:
        await core.backend.close()
    assert all(len(ids) == 16 for ids in runs[""])  # the tiny model never ends its turn
    assert runs[""] != runs["persona"]


async def test_a_score_equals_the_one_from_full_logits(core: InferenceCore) -> None:
    """Score runs the LM head only where it predicts the text; the log-probabilities are the same."""
    import torch

    prompt = Prompt(chat=(ChatTurn("system", SYSTEM), ChatTurn("user", QUESTIONS[0])))
    text = "To je kampaň! Andrej Babiš"
    for adapter in ("", "persona"):
        result = await core.score(prompt, text, adapter)
        context_ids, text_ids = core.backend.encode(prompt), core.backend.encode_text(text)
        ids = [*context_ids, *text_ids]
        with torch.inference_mode():
            logits = core.backend.model(
                input_ids=torch.tensor([ids]), adapter_names=[adapter or BASE]
            ).logits[0]
        logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
        expected = [float(logprobs[i, ids[i + 1]]) for i in range(len(context_ids) - 1, len(ids) - 1)]
        assert result.token_count == len(text_ids) == len(expected)
        assert [lp for _, lp in result.tokens] == pytest.approx(expected, abs=1e-4)
        assert result.total_logprob == pytest.approx(sum(expected), abs=1e-3)
