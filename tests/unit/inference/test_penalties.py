"""Sampling penalties of the transformers backend, by hand on a four-word vocabulary.

repetition_penalty divides (multiplies, when negative) the logits of every token of the prompt
and the answer; presence and frequency penalties subtract from the logits of the answer's own
tokens only, once or per use (OpenAI's and vLLM's semantics), so a word of the question is not
discouraged.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from talklike.inference.backends.transformers_backend import TransformersBackend, _Row
from talklike.inference.types import GenerationRequest, Sampling

torch = pytest.importorskip("torch")


def pick(logits: list[float], prompt: tuple[int, ...], generated: list[int], **sampling: Any) -> int:
    loop = asyncio.new_event_loop()
    try:
        request = GenerationRequest("r", prompt, "", Sampling(**sampling))
        row = _Row(request, loop, asyncio.Queue(), generated=list(generated))
        tensor = torch.tensor(logits)
        choice = TransformersBackend._sample(tensor, row)
        assert tensor.tolist() == logits  # the batch's logits are not written into
        return choice
    finally:
        loop.close()


def test_presence_penalty_lowers_tokens_the_answer_holds_once() -> None:
    logits = [4.0, 3.5, 1.0, 0.0]
    assert pick(logits, (), [0, 0, 0]) == 0
    assert pick(logits, (), [0, 0, 0], presence_penalty=0.4) == 0  # 3.6 > 3.5
    assert pick(logits, (), [0, 0, 0], presence_penalty=0.6) == 1  # 3.4 < 3.5


def test_frequency_penalty_counts_each_use() -> None:
    logits = [4.0, 3.5, 1.0, 0.0]
    assert pick(logits, (), [0], frequency_penalty=0.3) == 0  # 3.7
    assert pick(logits, (), [0, 0], frequency_penalty=0.3) == 1  # 3.4


def test_answer_penalties_leave_the_prompt_tokens_alone_unlike_repetition_penalty() -> None:
    logits = [4.0, 3.5, 1.0, 0.0]
    assert pick(logits, (0,), [], presence_penalty=2.0, frequency_penalty=2.0) == 0
    assert pick(logits, (0,), [], repetition_penalty=1.2) == 1  # 4 / 1.2 = 3.33 < 3.5
    assert pick(logits, (0,), [0], repetition_penalty=1.1, presence_penalty=0.2) == 1  # 3.64 - 0.2


def test_top_k_samples_only_among_the_k_likeliest_and_the_seed_repeats_it() -> None:
    import torch as t

    logits = [0.0, 5.0, 4.9, -1.0, 4.8]

    def draw(seed: int) -> int:
        loop = asyncio.new_event_loop()
        try:
            request = GenerationRequest("r", (), "", Sampling(temperature=1.0, top_k=2, seed=seed))
            row = _Row(request, loop, asyncio.Queue(), generator=t.Generator().manual_seed(seed))
            return TransformersBackend._sample(t.tensor(logits), row)
        finally:
            loop.close()

    drawn = {draw(seed) for seed in range(40)}
    assert drawn == {1, 2}
    assert [draw(3) for _ in range(3)] == [draw(3)] * 3
