"""The OpenAI backend: serve models fine-tuned on OpenAI through the same RPCs.

The base model is an OpenAI model name (``TALKLIKE_INFERENCE_BASE_MODEL``); an adapter is a
model fine-tuned there, loaded from an adapter directory whose manifest names it
(``fine_tuned_model``, written by the training service's OpenAI backend). Generation streams
chat completions. OpenAI returns text, not token ids, so tokens are counted with tiktoken and
Score (which needs the log-probabilities of a given text) is not available: it fails with
FAILED_PRECONDITION saying so.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.inference.settings import InferenceSettings
from talklike.inference.types import Chunk, GenerationRequest, Prompt, ScoreResult, StopReason


class OpenAIBackend:
    """Chat completions for OpenAI (or any OpenAI-compatible) models."""

    name = "openai"

    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self.model_name = settings.base_model
        self.model_sha256 = ""
        self.max_context_tokens = settings.max_context_tokens or 128_000
        self.client: Any = None
        self._models: dict[str, str] = {}  # adapter name -> fine-tuned model
        self._encoding: Any = None

    async def start(self) -> None:
        from openai import AsyncOpenAI

        if not os.environ.get("OPENAI_API_KEY"):
            raise FailedPrecondition("the openai backend needs an API key: set OPENAI_API_KEY")
        self.client = AsyncOpenAI(base_url=self.settings.openai_base_url or None, max_retries=3)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    def _count(self, text: str) -> int:
        if self._encoding is None:
            try:
                import tiktoken

                self._encoding = tiktoken.get_encoding("o200k_base")
            except Exception:  # no offline encoding files: estimate, ~4 characters a token
                self._encoding = False
        return len(self._encoding.encode(text)) if self._encoding else max(1, len(text) // 4)

    def encode(self, prompt: Prompt) -> list[int]:
        """Placeholder ids, one per token, for the length check and the usage counts."""
        return [0] * sum(self._count(m["content"]) + 4 for m in _messages(prompt))

    def encode_text(self, text: str) -> list[int]:
        return [0] * self._count(text)

    def decode(self, ids: Sequence[int]) -> str:
        raise InvalidArgument("input", "the openai backend returns text, not token ids")

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        if request.prompt is None:
            raise FailedPrecondition("the openai backend needs the prompt text")
        messages = _messages(request.prompt)
        model = self._models.get(request.adapter, self.model_name) if request.adapter else self.model_name
        s = request.sampling
        stream = await self.client.chat.completions.create(
            model=model,
            messages=messages,
            temperature=s.temperature,
            top_p=s.top_p,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            max_completion_tokens=s.max_new_tokens,
            seed=s.seed,
            stream=True,
        )
        try:
            async for event in stream:
                if not event.choices:
                    continue
                choice = event.choices[0]
                text = choice.delta.content or ""
                if choice.finish_reason:
                    reason = StopReason.MAX_TOKENS if choice.finish_reason == "length" else StopReason.EOS
                    yield Chunk(text=text, token_count=self._count(text) if text else 0, stop=reason)
                    return
                if text:
                    yield Chunk(text=text, token_count=self._count(text))
        finally:
            await stream.close()

    async def score(self, context_ids: list[int], text_ids: list[int], adapter: str) -> ScoreResult:
        raise FailedPrecondition("the openai backend cannot score a given text (no prompt log-probabilities)")

    async def load_adapter(self, name: str, path: Path) -> None:
        manifest = json.loads((path / "adapter_manifest.json").read_text(encoding="utf-8"))
        model = manifest.get("fine_tuned_model")
        if not model:
            raise FailedPrecondition(
                f"adapter {name!r} has no fine_tuned_model in its manifest: it was not trained on OpenAI"
            )
        self._models[name] = str(model)

    async def unload_adapter(self, name: str) -> None:
        self._models.pop(name, None)


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    if prompt.chat:
        return [{"role": t.role, "content": t.content} for t in prompt.chat]
    return [{"role": "user", "content": prompt.raw or ""}]
