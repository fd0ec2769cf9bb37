"""Moderation backends behind one small protocol: the offline lexicon and OpenAI's endpoint.

The OpenAI backend sends ``omni-moderation-latest`` an array of texts per request (fewer
requests, the same per-text results), at most ``requests_per_minute`` request starts per
minute and ``concurrency`` in flight, and retries under the project's one policy for OpenAI
calls (``talklike.common.openai_calls``: connection errors, 429 and 5xx, the server's wait
first, else exponential backoff). A refused key, an unknown model or a
malformed reply fails at once with what to change. The key is read from the service's
environment, never from a request.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai
from talklike.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from talklike.common.openai_calls import call_with_retries
from talklike.moderation.categories import CATEGORIES, Scores
from talklike.moderation.local import LocalBackend
from talklike.moderation.settings import ModerationSettings


class Backend(Protocol):
    """Scores texts: one ``Scores`` per text, in order."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def classify(self, texts: Sequence[str]) -> list[Scores]: ...


class RateLimiter:
    """Spaces request starts so that at most ``per_minute`` begin in any minute (no bursts)."""

    def __init__(self, per_minute: float, clock: Any = time.monotonic, sleep: Any = asyncio.sleep) -> None:
        self.interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the next request may start."""
        async with self._lock:
            now = self._clock()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await self._sleep(delay)


@dataclass
class OpenAIStats:
    """What the OpenAI backend did since the service started."""

    requests: int = 0
    retries: int = 0
    texts: int = 0


@dataclass
class OpenAIBackend:
    """OpenAI's moderation endpoint through the ``openai`` client."""

    api_key: str
    base_url: str
    model: str = "omni-moderation-latest"
    batch_size: int = 32
    requests_per_minute: float = 300.0
    concurrency: int = 4
    max_retries: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 60.0
    stats: OpenAIStats = field(default_factory=OpenAIStats)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    name = "openai"

    def __post_init__(self) -> None:
        self._limiter = RateLimiter(self.requests_per_minute)
        self._client = openai.AsyncOpenAI(
            api_key=self.api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s
        )

    async def close(self) -> None:
        await self._client.close()

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        """Scores in order, ``batch_size`` texts per request, requests concurrent up to the limits."""
        batches = [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        gate = asyncio.Semaphore(self.concurrency)

        async def run(batch: list[str]) -> list[Scores]:
            async with gate:
                return await self._request(batch)

        results = await asyncio.gather(*(run(b) for b in batches))
        return [scores for batch in results for scores in batch]

    async def _request(self, batch: list[str]) -> list[Scores]:
        try:
            response = await call_with_retries(
                lambda: self._client.moderations.create(model=self.model, input=batch),
                what=f"OpenAI moderation at {self.base_url}",
                hint="retry later, or lower TALKLIKE_MODERATION_OPENAI_REQUESTS_PER_MINUTE",
                max_retries=self.max_retries,
                backoff_s=self.backoff_s,
                rng=self.rng,
                counts=self.stats,
                before_attempt=self._limiter.wait,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise FailedPrecondition(
                f"OpenAI refused the API key ({error.status_code}); set a valid key in OPENAI_API_KEY "
                "for the moderation service"
            ) from error
        except openai.NotFoundError as error:
            raise FailedPrecondition(
                f"OpenAI does not serve the moderation model {self.model!r}; "
                "set TALKLIKE_MODERATION_OPENAI_MODEL (e.g. omni-moderation-latest)"
            ) from error
        except openai.BadRequestError as error:
            raise InvalidArgument("texts", f"OpenAI rejected the texts: {error.message}") from error
        except openai.APIStatusError as error:
            raise FailedPrecondition(
                f"OpenAI moderation answered {error.status_code}: {error.message}"
            ) from error
        self.stats.texts += len(batch)
        return parse_results(response, len(batch))


def parse_results(response: Any, expected: int) -> list[Scores]:
    """One Scores per result of a moderation response; a reply of the wrong shape is Unavailable."""
    results = getattr(response, "results", None)
    if not isinstance(results, list) or len(results) != expected:
        got = len(results) if isinstance(results, list) else "no"
        raise Unavailable(f"OpenAI moderation returned {got} results for {expected} texts; retry later")
    out: list[Scores] = []
    for result in results:
        data = result.model_dump(by_alias=True) if hasattr(result, "model_dump") else dict(result)
        raw_scores = data.get("category_scores") or {}
        raw_flags = data.get("categories") or {}
        scores = {name: float(raw_scores.get(name) or 0.0) for name in CATEGORIES}
        flags = {name: bool(raw_flags.get(name)) for name in CATEGORIES}
        out.append(Scores.of(scores, flags))
    return out


def openai_backend(settings: ModerationSettings) -> OpenAIBackend:
    """The OpenAI backend from the settings; FailedPrecondition naming the variable when the key is missing."""
    key = os.environ.get(settings.openai_api_key_env, "").strip()
    if not key:
        raise FailedPrecondition(
            f"the openai backend needs an API key: set {settings.openai_api_key_env} in the moderation "
            "service's environment (or use the local backend)"
        )
    return OpenAIBackend(
        api_key=key,
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        batch_size=settings.openai_batch_size,
        requests_per_minute=settings.openai_requests_per_minute,
        concurrency=settings.openai_concurrency,
        max_retries=settings.openai_max_retries,
        backoff_s=settings.openai_backoff_s,
        timeout_s=settings.openai_timeout_s,
    )


__all__ = ["Backend", "LocalBackend", "OpenAIBackend", "RateLimiter", "openai_backend", "parse_results"]
