"""The one policy for calls to an OpenAI-compatible API: which failures are retried, how long to wait.

Two services loop over their own calls (generation's chat completions, moderation's
moderations) because they count requests and retries, space request starts and turn the last
failure into a message that names their settings; the SDK's retry would hide all of that. So
the SDK's retry is off there (``max_retries=0``) and this module decides instead, the same way
the SDK would: a connection error, a timeout, a 429 or a 5xx is retried; the server's
``retry-after-ms`` (milliseconds) or ``Retry-After`` (seconds or an HTTP date) wins, up to
``MAX_SERVER_WAIT_S``; otherwise exponential backoff with up to 10 % jitter. Everything else is
the caller's to map (a refused key, an unknown model, a bad request), at once. Clients that need
no counts (the judge, the OpenAI training and inference backends) keep the SDK's own retry,
which follows the same rules.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import openai
from talklike.common.errors import Unavailable

#: The longest wait a server's Retry-After may impose before the next attempt (the SDK's own cap).
MAX_SERVER_WAIT_S = 60.0

#: Failures worth another attempt: the connection (timeouts included), 429, and 5xx.
RETRYABLE: tuple[type[Exception], ...] = (
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)

T = TypeVar("T")


def server_wait(error: Exception, now: Callable[[], float] = time.time) -> float | None:
    """The wait the server asked for in ``error``'s response headers, capped; None when it asked none."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return min(max(float(raw_ms) / 1000.0, 0.0), MAX_SERVER_WAIT_S)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now()
    return min(max(seconds, 0.0), MAX_SERVER_WAIT_S)


def retry_delay(error: Exception, attempt: int, backoff_s: float, rng: random.Random) -> float:
    """How long to wait before retry ``attempt`` (0-based): the server's wait, else backoff × 2^attempt + jitter."""
    wait = server_wait(error)
    if wait is not None:
        return wait
    delay = backoff_s * (2**attempt)
    return delay + rng.uniform(0, delay / 10)


class RetryCounts(Protocol):
    """Where a caller counts its attempts (``requests``) and retries."""

    requests: int
    retries: int


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    hint: str,
    max_retries: int,
    backoff_s: float,
    rng: random.Random,
    counts: RetryCounts,
    before_attempt: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """``call()``, again after each retryable failure, at most ``max_retries`` times more.

    ``before_attempt`` runs before every attempt (a rate limiter); ``counts`` is told of every
    attempt and retry. The last retryable failure is Unavailable naming ``what`` failed, how
    often and with what, then ``hint`` (what to do). Any other exception passes through at once.
    """
    attempt = 0
    while True:
        if before_attempt is not None:
            await before_attempt()
        counts.requests += 1
        try:
            return await call()
        except RETRYABLE as error:
            if attempt >= max_retries:
                raise Unavailable(f"{what} failed {attempt + 1} times, last with: {error}; {hint}") from error
            counts.retries += 1
            await asyncio.sleep(retry_delay(error, attempt, backoff_s, rng))
            attempt += 1
