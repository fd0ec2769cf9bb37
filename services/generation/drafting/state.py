"""What a draft run carries from step to step: the pack drafted so far, the log, and the context.

Each stage (``card``, ``texts``, ``publish``) is a function of a ``DraftContext``; the
``Drafter`` builds one context per run and calls the stages in order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from talklike.generation.drafting.answers import CheckedText, Rejection
from talklike.generation.drafting.spec import DraftFailed, DraftSpec

T = TypeVar("T")
ProgressCallback = Callable[[str, int, int], Awaitable[None]]

#: The placeholder every template and question names: the topic.
TOPIC = "topic"


@dataclass
class Parsed:
    """A parsed answer and the items it had that were set aside."""

    value: Any
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class DraftLog:
    """What happened: every step's outcome, answers set aside, items rejected, sample answers."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    items: list[Rejection] = field(default_factory=list)
    cache_hits: int = 0
    malformed: int = 0
    notes: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """Everything drafted so far: the pack in memory."""

    card: dict[str, Any] = field(default_factory=dict)
    voice: dict[str, Any] = field(default_factory=dict)
    styles: list[dict[str, str]] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    meanings: dict[str, str] = field(default_factory=dict)
    templates: dict[str, list[CheckedText]] = field(default_factory=dict)
    questions: list[CheckedText] = field(default_factory=list)
    style_calls: Counter[str] = field(default_factory=Counter)
    quota: dict[str, int] = field(default_factory=dict)


#: One step's question (``asking.StepAsker.ask``): (step, label, messages, max_tokens, parse) →
#: a validated answer from the cache or the LLM, or None when every attempt was malformed.
Ask = Callable[[str, str, list[dict[str, str]], int, Callable[[str], Parsed]], Awaitable[Parsed | None]]


@dataclass
class DraftContext:
    """One run's request, state and ways out, handed to every stage."""

    spec: DraftSpec
    plan: Plan
    log: DraftLog
    ask: Ask
    on_progress: ProgressCallback
    #: Writes the failed report and returns the error to raise.
    fail: Callable[[str], DraftFailed]

    async def essential(
        self, step: str, messages: list[dict[str, str]], max_tokens: int, parse: Callable[[str], Parsed]
    ) -> Any:
        """A step the rest depends on: its answer, or DraftFailed after the retry budget."""
        await self.on_progress(step, 0, 1)
        parsed = await self.ask(step, step, messages, max_tokens, parse)
        if parsed is None:
            last = self.log.steps[-1].get("problem", "")
            raise self.fail(
                f"the LLM at {self.spec.llm.base_url} gave no usable {step} answer in "
                f"{self.spec.malformed_retries + 1} attempts (last problem: {last})"
            )
        self.log.items.extend(parsed.rejected)
        await self.on_progress(step, 1, 1)
        return parsed.value


async def gather_all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Await all of them concurrently; on the first error cancel the rest (so no request outlives
    a failed draft) and raise that error as it is."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
        if failed is not None:
            raise cast(BaseException, failed.exception())
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
