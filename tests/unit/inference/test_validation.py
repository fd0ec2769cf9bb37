"""Request validation in the inference core: each error names the field and the reason."""

from __future__ import annotations

import math

import pytest
from talklike.common.errors import InvalidArgument
from talklike.inference.core import validate_prompt, validate_sampling
from talklike.inference.types import ChatTurn, Prompt, Sampling


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"temperature": 2.5}, "sampling.temperature", "between 0 and 2"),
        ({"temperature": math.nan}, "sampling.temperature", "between 0 and 2"),
        ({"top_p": 0.0}, "sampling.top_p", "(0, 1]"),
        ({"top_k": -1}, "sampling.top_k", "not be negative"),
        ({"max_new_tokens": 0}, "sampling.max_new_tokens", "between 1 and 4096"),
        ({"stop_sequences": tuple("abcdefghi")}, "sampling.stop_sequences", "at most 8"),
        ({"stop_sequences": ("ok", "")}, "sampling.stop_sequences[1]", "1 to 64 characters"),
        ({"repetition_penalty": 0.5}, "sampling.repetition_penalty", "between 1 and 2"),
    ],
)
def test_bad_sampling_names_the_field(changes: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_sampling(Sampling(**changes))  # type: ignore[arg-type]
    assert caught.value.field == field and reason in caught.value.message


@pytest.mark.parametrize(
    ("prompt", "field"),
    [
        (Prompt(), "input"),
        (Prompt(chat=()), "input.chat.messages"),
        (Prompt(chat=(ChatTurn("user", "hi"), ChatTurn("robot", "x"))), "input.chat.messages[1].role"),
    ],
)
def test_bad_prompts_name_the_field(prompt: Prompt, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_prompt(prompt)
    assert caught.value.field == field


def test_good_requests_pass_unchanged() -> None:
    sampling = Sampling(temperature=0.7, top_p=0.9, top_k=40, stop_sequences=("\n\n",))
    prompt = Prompt(chat=(ChatTurn("system", "Be brief."), ChatTurn("user", "Jak se máte?")))
    assert validate_sampling(sampling) is sampling and validate_prompt(prompt) is prompt
