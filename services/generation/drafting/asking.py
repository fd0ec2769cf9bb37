"""One step's question to the LLM: from the cache when answered before, else asked with feedback.

Every valid answer is cached, keyed by the step's label and the exact prompt (and model and
sampling), so a second run replays what was answered without a request. A malformed answer is
asked again with the problem fed back, ``malformed_retries`` times, each set aside in the log
with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import openai
from talklike.generation.drafting import prompts
from talklike.generation.drafting.answers import Malformed
from talklike.generation.drafting.state import DraftLog, Parsed
from talklike.generation.llm import ChatCaller, LlmConfig, ResponseCache


class StepAsker:
    """Asks through one client, at most ``llm.concurrency`` questions in flight."""

    def __init__(
        self,
        llm: LlmConfig,
        cache: ResponseCache,
        log: DraftLog,
        malformed_retries: int,
        client: openai.AsyncOpenAI,
        caller: ChatCaller,
    ) -> None:
        self.llm = llm
        self.cache = cache
        self.log = log
        self.malformed_retries = malformed_retries
        self.client = client
        self.caller = caller
        self._gate = asyncio.Semaphore(max(1, llm.concurrency))

    async def ask(
        self,
        step: str,
        label: str,
        messages: list[dict[str, str]],
        max_tokens: int,
        parse: Callable[[str], Parsed],
    ) -> Parsed | None:
        """A validated answer for ``messages``, from the cache or the LLM; None when every
        attempt was malformed (each is set aside with its reason)."""
        llm = self.llm
        # The label (step and batch) is part of the key: two batches may send the same prompt
        # (a failed batch leaves the next one's prompt unchanged), and each keeps its own answer.
        params = {
            "step": label,
            "temperature": llm.temperature,
            "max_tokens": min(max_tokens, llm.max_tokens),
        }
        key = ResponseCache.key(llm.model, messages, params)
        cached = self.cache.get(key)
        if cached is not None:
            try:
                parsed = parse(cached)
            except Malformed:
                pass  # cached under an older validation: ask again
            else:
                self.log.cache_hits += 1
                self.log.steps.append({"step": label, "source": "cache", "attempts": 0, "ok": True})
                return parsed
        conversation = list(messages)
        problem = ""
        for attempt in range(1, self.malformed_retries + 2):
            async with self._gate:
                content = await self.caller.complete(self.client, conversation, params)
            try:
                parsed = parse(content)
            except Malformed as error:
                problem = error.reason
                self.log.malformed += 1
                self.log.answers.append(
                    {"step": label, "attempt": attempt, "reason": problem, "reply": content}
                )
                conversation = [
                    *messages,
                    {"role": "assistant", "content": content[:4000]},
                    {"role": "user", "content": prompts.feedback(problem)},
                ]
                continue
            self.cache.put(key, llm.model, messages, params, content)
            self.log.steps.append({"step": label, "source": "llm", "attempts": attempt, "ok": True})
            return parsed
        self.log.steps.append(
            {
                "step": label,
                "source": "llm",
                "attempts": self.malformed_retries + 1,
                "ok": False,
                "problem": problem,
            }
        )
        return None
