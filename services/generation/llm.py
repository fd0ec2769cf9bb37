"""Journalist questions written by an LLM behind any OpenAI-compatible endpoint.

The seed's pipeline asked an LLM for one question per answer; this does the same with the
``openai`` client against any base URL (OpenAI, vLLM, talklike's own inference facade):

- **batched**: one request asks for the questions of ``batch_size`` answers at once (JSON
  reply), with up to ``concurrency`` requests in flight;
- **retries with backoff** under the project's one policy for OpenAI calls
  (``talklike.common.openai_calls``): connection errors, timeouts, 429 and 5xx are retried,
  the server's ``retry-after-ms``/``Retry-After`` first, else exponential backoff; a refused
  key or unknown model fails at once with the fix (``ChatCaller``, which the drafter shares);
- **a response cache** keyed by (model, prompt, parameters) under the data home, so a rerun
  does not pay twice; only well-formed replies are cached;
- **malformed replies** (not JSON, wrong count, empty or signed questions) are recorded for
  ``invalid/`` with the reason; the batch is asked again, and answers still without a
  question fall back to the pack's question templates (counted in the stats).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import openai
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.common.openai_calls import call_with_retries
from talklike.common.paths import atomic_write_text
from talklike.generation.engine import Answer
from talklike.packs.loader import Pack

#: A question longer than this is not a question but a speech.
MAX_QUESTION_CHARS = 400
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


@dataclass(frozen=True)
class LlmConfig:
    """Where and how to ask; the key is the service's only for an allowed endpoint (``endpoints``)."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    temperature: float = 0.7
    max_tokens: int = 2048
    batch_size: int = 10
    concurrency: int = 4
    max_retries: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 60.0
    malformed_retries: int = 1


@dataclass
class LlmStats:
    """What the LLM step cost and how it went."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    malformed_replies: int = 0
    questions: int = 0
    fallbacks: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ResponseCache:
    """Replies on disk, one JSON file per key, written atomically."""

    root: Path

    @staticmethod
    def key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        """sha256 of the canonical (model, prompt, parameters)."""
        payload = json.dumps(
            {"model": model, "messages": messages, "params": params},
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached reply text for ``key``, or None (a corrupt entry counts as a miss)."""
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        content = entry.get("content") if isinstance(entry, dict) else None
        return content if isinstance(content, str) else None

    def put(
        self, key: str, model: str, messages: list[dict[str, str]], params: dict[str, Any], content: str
    ) -> None:
        """Remember a well-formed reply."""
        entry = {"model": model, "messages": messages, "params": params, "content": content}
        atomic_write_text(self._path(key), json.dumps(entry, ensure_ascii=False, indent=1))


def prompt_messages(pack: Pack, answers: Sequence[Answer]) -> list[dict[str, str]]:
    """The request for one batch: numbered answers with topic and style, JSON out."""
    styles = {s.id: s for s in pack.styles}
    lines = []
    for number, answer in enumerate(answers, start=1):
        body = answer.text.removesuffix("\n" + pack.signature)
        style = styles[answer.style]
        lines.append(f"{number}. topic: {answer.topic}; tone: {style.name} ({style.description})\n{body}")
    system = (
        f"You are a professional journalist interviewing {pack.display_name}. For each numbered answer, "
        f"write the one question a journalist asked that this answer replies to, in the language with "
        f"BCP 47 tag '{pack.language}'. The question must be about the answer's topic and suit its tone. "
        f'Reply with JSON only, exactly {len(answers)} questions in order: {{"questions": ["...", ...]}}.'
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(lines)}]


def parse_reply(content: str, expected: int, signature: str) -> tuple[list[str | None], list[str], str]:
    """(questions or None per answer, per-item problems, whole-reply problem or "")."""
    text = _FENCE.sub("", content.strip()).strip()
    start = text.find("{")
    end = text.rfind("}")
    if start < 0 or end < start:
        return [], [], "the reply is not a JSON object"
    try:
        data = json.loads(text[start : end + 1])
    except ValueError as error:
        return [], [], f"the reply is not valid JSON ({error})"
    questions = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(questions, list):
        return [], [], 'the reply has no "questions" list'
    if len(questions) != expected:
        return [], [], f"the reply has {len(questions)} questions for {expected} answers"
    out: list[str | None] = []
    problems: list[str] = []
    for number, item in enumerate(questions, start=1):
        reason = ""
        if not isinstance(item, str) or not item.strip():
            reason = "empty or not a string"
        elif len(item.strip()) > MAX_QUESTION_CHARS:
            reason = f"longer than {MAX_QUESTION_CHARS} characters"
        elif signature.casefold() in item.casefold():
            reason = "contains the persona's signature"
        if reason:
            out.append(None)
            problems.append(f"question {number}: {reason}")
        else:
            out.append(" ".join(str(item).split()))
    return out, problems, ""


def api_key_for(base_url: str, key: str) -> str:
    """The key to send; OpenAI itself needs a real one, local servers accept any."""
    if key:
        return key
    host = urlparse(base_url).hostname or ""
    if host.endswith("openai.com"):
        raise FailedPrecondition(
            "LLM mode against OpenAI needs an API key: list the endpoint in TALKLIKE_GENERATION_LLM_BASE_URLS "
            "and set OPENAI_API_KEY for the generation service, or send your own in llm.api_key"
        )
    return "not-needed"


@dataclass
class ChatCaller:
    """The generation service's one chat-completions call: retries, counts and mapped errors.

    The question writer and the pack drafter both ask through it, so a refused key, an
    unknown model or an endpoint that stays down reads the same whichever asked.
    """

    config: LlmConfig
    stats: LlmStats = field(default_factory=LlmStats)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def open_client(self) -> openai.AsyncOpenAI:
        """A client for the configured endpoint; retries are this class's, not the SDK's."""
        return openai.AsyncOpenAI(
            api_key=api_key_for(self.config.base_url, self.config.api_key),
            base_url=self.config.base_url,
            max_retries=0,
            timeout=self.config.timeout_s,
        )

    async def complete(
        self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], params: dict[str, Any]
    ) -> str:
        """The reply's text ("" when it has none); domain errors for every way it can fail."""
        config = self.config

        try:
            response = await call_with_retries(
                lambda: client.chat.completions.create(
                    model=config.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=params["temperature"],
                    max_tokens=params["max_tokens"],
                ),
                what=f"the LLM at {config.base_url}",
                hint="check that it runs, or retry later",
                max_retries=config.max_retries,
                backoff_s=config.backoff_s,
                rng=self.rng,
                counts=self.stats,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise FailedPrecondition(
                f"the LLM at {config.base_url} refused the API key ({error.status_code}); "
                "set OPENAI_API_KEY for the generation service"
            ) from error
        except openai.NotFoundError as error:
            raise InvalidArgument(
                "llm.model", f"the endpoint {config.base_url} does not serve model {config.model!r}"
            ) from error
        except openai.APIStatusError as error:
            raise FailedPrecondition(
                f"the LLM at {config.base_url} rejected the request ({error.status_code}): {error.message}"
            ) from error
        choices = getattr(response, "choices", None) or []
        content = choices[0].message.content if choices and choices[0].message else None
        return content or ""


@dataclass
class LlmQuestionWriter:
    """Asks the endpoint for questions, batch by batch, through the cache."""

    config: LlmConfig
    cache: ResponseCache
    pack: Pack
    stats: LlmStats = field(default_factory=LlmStats)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def __post_init__(self) -> None:
        self.caller = ChatCaller(self.config, self.stats, self.rng)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

    async def write(
        self,
        answers: Sequence[Answer],
        on_batch: Callable[[int], Awaitable[None]] | None = None,
    ) -> list[str | None]:
        """A question (or None → use a template) for every answer, in order."""
        if not self.config.base_url or not self.config.model:
            raise InvalidArgument(
                "llm", "LLM mode needs a base URL and a model (--llm-base-url, --llm-model)"
            )
        client = self.caller.open_client()
        size = max(1, self.config.batch_size)
        batches = [list(answers[i : i + size]) for i in range(0, len(answers), size)]
        gate = asyncio.Semaphore(max(1, self.config.concurrency))
        results: list[list[str | None]] = [[] for _ in batches]

        failed = False

        async def run(index: int) -> None:
            nonlocal failed
            async with gate:
                if failed:  # a refused key or an unknown model fails every batch alike: send no more
                    return
                try:
                    results[index] = await self._batch(client, index, batches[index])
                except BaseException:
                    failed = True
                    raise
            if on_batch is not None:
                await on_batch(len(batches[index]))

        tasks = [asyncio.create_task(run(i)) for i in range(len(batches))]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            error = next((t.exception() for t in done if not t.cancelled() and t.exception()), None)
            if error is not None:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise error
        finally:
            for task in tasks:
                task.cancel()
            await client.close()
        out = [q for batch in results for q in batch]
        self.stats.questions += sum(1 for q in out if q is not None)
        self.stats.fallbacks += sum(1 for q in out if q is None)
        return out

    async def _batch(self, client: openai.AsyncOpenAI, index: int, answers: list[Answer]) -> list[str | None]:
        messages = prompt_messages(self.pack, answers)
        params = self.params()
        key = ResponseCache.key(self.config.model, messages, params)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            questions, problems, whole = parse_reply(cached, len(answers), self.pack.signature)
            if not whole:
                self._record_items(index, answers, problems, cached)
                return questions
        for _ in range(self.config.malformed_retries + 1):
            content = await self.caller.complete(client, messages, params)
            questions, problems, whole = parse_reply(content, len(answers), self.pack.signature)
            if whole:
                self.stats.malformed_replies += 1
                self.invalid.append(
                    {
                        "batch": index,
                        "answers": [a.index + 1 for a in answers],
                        "reason": whole,
                        "reply": content,
                    }
                )
                continue
            self.cache.put(key, self.config.model, messages, params, content)
            self._record_items(index, answers, problems, content)
            return questions
        return [None] * len(answers)

    def _record_items(self, index: int, answers: list[Answer], problems: list[str], content: str) -> None:
        for problem in problems:
            self.invalid.append(
                {
                    "batch": index,
                    "answers": [a.index + 1 for a in answers],
                    "reason": problem,
                    "reply": content,
                }
            )
