"""The pairwise LLM judge against a real OpenAI-compatible HTTP server on loopback (fake_judge.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_judge import ANSWERS, PERSONA, PLAIN, QUESTION, SIGNATURE, judge_server
from talklike.evaluation.judge import PairwiseJudge


@pytest.fixture(name="judge_server")
async def judge_server_fixture() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    async with judge_server() as server:
        yield server


async def verdict(base_url: str, model: str, before: str, after: str) -> str:
    judge = PairwiseJudge(base_url, model, "a Czech populist politician", SIGNATURE)
    return (await asyncio.to_thread(judge.judge, QUESTION, before, after)).winner


async def test_a_consistent_judge_decides_and_is_asked_in_both_orders(
    judge_server: tuple[str, list[dict[str, Any]]],
) -> None:
    base_url, seen = judge_server
    assert await verdict(base_url, "fair", PLAIN, PERSONA) == "after"
    assert await verdict(base_url, "fair", PERSONA, PLAIN) == "before"
    first, second = (ANSWERS.search(r["messages"][-1]["content"]).groups() for r in seen[:2])  # type: ignore[union-attr]
    assert first == (PLAIN, PERSONA) and second == (PERSONA, PLAIN)  # the same pair, swapped
    assert all(r["temperature"] == 0 and SIGNATURE in r["messages"][-1]["content"] for r in seen)


async def test_position_bias_and_unreadable_verdicts_are_ties(
    judge_server: tuple[str, list[dict[str, Any]]],
) -> None:
    base_url, _ = judge_server
    assert await verdict(base_url, "first", PLAIN, PERSONA) == "tie"  # "A" both times cancels out
    assert await verdict(base_url, "garbage", PLAIN, PERSONA) == "tie"
    assert await verdict(base_url, "chatty", PLAIN, PERSONA) == "after"  # JSON inside prose still counts
