"""The one retry policy for OpenAI calls: the server's wait in every form, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import openai
import pytest
from talklike.common.errors import Unavailable
from talklike.common.openai_calls import MAX_SERVER_WAIT_S, call_with_retries, server_wait

_REQUEST = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")


def _status(code: int, headers: dict[str, str]) -> openai.APIStatusError:
    response = httpx.Response(code, headers=headers, request=_REQUEST)
    kind = openai.RateLimitError if code == 429 else openai.InternalServerError
    return kind("refused", response=response, body=None)


def test_the_server_wait_reads_milliseconds_seconds_and_dates() -> None:
    assert server_wait(_status(429, {"retry-after-ms": "250", "retry-after": "7"})) == 0.25
    assert server_wait(_status(429, {"retry-after": "3"})) == 3.0
    date = format_datetime(datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC), usegmt=True)
    assert (
        server_wait(
            _status(429, {"retry-after": date}), now=lambda: datetime(2030, 1, 1, tzinfo=UTC).timestamp()
        )
        == 10.0
    )
    assert server_wait(_status(429, {"retry-after": "9999"})) == MAX_SERVER_WAIT_S
    assert server_wait(_status(429, {"retry-after": "soon"})) is None
    assert server_wait(_status(500, {})) is None


@dataclass
class Counts:
    requests: int = 0
    retries: int = 0


async def test_retryable_failures_are_retried_then_given_up_with_the_count() -> None:
    counts = Counts()
    before: list[int] = []

    async def wait() -> None:
        before.append(counts.requests)

    async def call() -> str:
        if counts.requests < 3:
            raise _status(500 if counts.requests == 1 else 429, {"retry-after-ms": "1"})
        return "ok"

    policy = {"max_retries": 2, "backoff_s": 0.0, "rng": random.Random(0)}
    result = await call_with_retries(
        call, what="the LLM", hint="retry later", counts=counts, before_attempt=wait, **policy
    )
    assert result == "ok" and counts == Counts(requests=3, retries=2)
    assert before == [0, 1, 2], "the rate limiter runs before every attempt"

    async def down() -> str:
        raise openai.APIConnectionError(request=_REQUEST)

    counts = Counts()
    with pytest.raises(
        Unavailable, match=r"^the LLM failed 3 times, last with: Connection error\.; retry later$"
    ):
        await call_with_retries(down, what="the LLM", hint="retry later", counts=counts, **policy)
    assert counts == Counts(requests=3, retries=2)


async def test_other_failures_pass_through_at_once() -> None:
    counts = Counts()

    async def refused() -> str:
        response = httpx.Response(401, request=_REQUEST)
        raise openai.AuthenticationError("bad key", response=response, body=None)

    with pytest.raises(openai.AuthenticationError):
        await call_with_retries(
            refused, what="x", hint="y", max_retries=5, backoff_s=0.0, rng=random.Random(0), counts=counts
        )
    assert counts == Counts(requests=1, retries=0)
