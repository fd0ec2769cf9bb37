"""The OpenAI backend's pieces that need no server: rate limiting, retry delays, the key, the reply's shape."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from talklike.common.errors import FailedPrecondition, Unavailable
from talklike.common.openai_calls import retry_delay
from talklike.moderation.backends import RateLimiter, openai_backend, parse_results
from talklike.moderation.settings import ModerationSettings


async def test_the_rate_limiter_spaces_request_starts() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(per_minute=120, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        await limiter.wait()
    assert slept == pytest.approx([0.5, 0.5, 0.5]), "120/min: one start every 0.5 s, the first at once"
    now[0] += 10
    await limiter.wait()
    assert len(slept) == 3, "after a quiet spell the next request starts at once"


def _error(headers: dict[str, str]) -> Exception:
    error = Exception("429")
    error.response = SimpleNamespace(headers=headers)  # type: ignore[attr-defined]
    return error


def test_retry_delay_honours_retry_after_else_backs_off() -> None:
    rng = random.Random(0)
    assert retry_delay(_error({"retry-after": "3"}), 0, 1.0, rng) == 3.0
    assert retry_delay(_error({"retry-after-ms": "250"}), 0, 1.0, rng) == 0.25
    assert retry_delay(_error({"retry-after": "9999"}), 0, 1.0, rng) == 60.0
    backoff = [retry_delay(_error({}), attempt, 0.5, rng) for attempt in range(3)]
    assert 0.5 <= backoff[0] <= 0.55 and 1.0 <= backoff[1] <= 1.1 and 2.0 <= backoff[2] <= 2.2


def test_a_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(FailedPrecondition, match="set OPENAI_API_KEY"):
        openai_backend(ModerationSettings())
    monkeypatch.setenv("MY_KEY", "k")
    backend = openai_backend(ModerationSettings(openai_api_key_env="MY_KEY", openai_batch_size=7))
    assert backend.batch_size == 7 and backend.model == "omni-moderation-latest"


def test_a_reply_of_the_wrong_shape_is_unavailable() -> None:
    result: dict[str, Any] = {
        "flagged": True,
        "categories": {"hate": True, "illicit": None},
        "category_scores": {"hate": 0.9, "harassment/threatening": 0.2},
    }
    parsed = parse_results(SimpleNamespace(results=[result]), 1)
    assert parsed[0].scores["hate"] == 0.9 and parsed[0].scores["harassment/threatening"] == 0.2
    assert parsed[0].flags["hate"] and not parsed[0].flags["illicit"] and parsed[0].scores["sexual"] == 0.0
    with pytest.raises(Unavailable, match="1 results for 2 texts"):
        parse_results(SimpleNamespace(results=[result]), 2)
