"""The inference core: validate, admit, generate through the backend, assemble text, count.

No grpc here: the servicer and the OpenAI-compatible HTTP face both call this, so the two
protocols share one data plane (as in KServe).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from talklike.common.errors import InvalidArgument, NotFound
from talklike.common.limits import MAX_TEXT_CHARS
from talklike.inference import adapters
from talklike.inference.admission import Admission
from talklike.inference.backend import Backend
from talklike.inference.metrics import InferenceMetrics
from talklike.inference.settings import InferenceSettings
from talklike.inference.text import TextAssembler
from talklike.inference.types import BaseModel, GenerationRequest, Prompt, Sampling, ScoreResult, StopReason

ROLES = {"system", "user", "assistant"}
_T = TypeVar("_T")
MAX_STOP_SEQUENCES = 8


@dataclass
class StreamEvent:
    """A text delta; the final event has ``stop`` and the token counts."""

    text: str
    completion_tokens: int
    stop: StopReason | None = None
    prompt_tokens: int = 0
    time_to_first_token_s: float = 0.0
    total_time_s: float = 0.0


def validate_sampling(s: Sampling) -> Sampling:
    """Check ranges; every error names its field under ``sampling.``."""
    if not (0.0 <= s.temperature <= 2.0) or math.isnan(s.temperature):
        raise InvalidArgument("sampling.temperature", f"must be between 0 and 2, got {s.temperature}")
    if not (0.0 < s.top_p <= 1.0):
        raise InvalidArgument("sampling.top_p", f"must be in (0, 1], got {s.top_p}")
    if s.top_k < 0:
        raise InvalidArgument("sampling.top_k", f"must not be negative, got {s.top_k}")
    if not (1 <= s.max_new_tokens <= 4096):
        raise InvalidArgument(
            "sampling.max_new_tokens", f"must be between 1 and 4096, got {s.max_new_tokens}"
        )
    if len(s.stop_sequences) > MAX_STOP_SEQUENCES:
        raise InvalidArgument(
            "sampling.stop_sequences", f"at most {MAX_STOP_SEQUENCES}, got {len(s.stop_sequences)}"
        )
    for i, stop in enumerate(s.stop_sequences):
        if not 1 <= len(stop) <= 64:
            raise InvalidArgument(f"sampling.stop_sequences[{i}]", "must be 1 to 64 characters")
    if not (1.0 <= s.repetition_penalty <= 2.0):
        raise InvalidArgument(
            "sampling.repetition_penalty", f"must be between 1 and 2, got {s.repetition_penalty}"
        )
    for name in ("presence_penalty", "frequency_penalty"):
        if not -2.0 <= getattr(s, name) <= 2.0:
            raise InvalidArgument(f"sampling.{name}", f"must be between -2 and 2, got {getattr(s, name)}")
    return s


def validate_prompt(prompt: Prompt, field: str = "input") -> Prompt:
    """A chat needs known roles and a non-empty last turn; a raw prompt must not be empty.

    The size is checked here, before any tokenizing: a 10 MB prompt once took the tokenizer
    seconds, and nothing that long fits any model's context anyway.
    """
    size = (
        sum(len(turn.content) for turn in prompt.chat) if prompt.chat is not None else len(prompt.raw or "")
    )
    if size > MAX_TEXT_CHARS:
        raise InvalidArgument(field, f"the prompt is {size:,} characters; at most {MAX_TEXT_CHARS:,}")
    if prompt.chat is not None:
        if not prompt.chat:
            raise InvalidArgument(f"{field}.chat.messages", "must not be empty")
        for i, turn in enumerate(prompt.chat):
            if turn.role not in ROLES:
                raise InvalidArgument(f"{field}.chat.messages[{i}].role", "must be system, user or assistant")
        return prompt
    if not prompt.raw:
        raise InvalidArgument(field, "give a chat or a non-empty prompt")
    return prompt


class InferenceCore:
    """One backend, the adapter store, admission control and metrics."""

    def __init__(
        self, settings: InferenceSettings, backend: Backend, metrics: InferenceMetrics | None = None
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.metrics = metrics or InferenceMetrics()
        self.store = (settings.home / "adapters").resolve()
        self.adapters: dict[str, adapters.LoadedAdapter] = {}
        self.admission = Admission(
            settings.max_concurrency, settings.max_queue, settings.queue_timeout_ms / 1000
        )
        # Read at scrape time: a gauge set per request kept a refused or timed-out waiter forever.
        self.metrics.queue_depth.set_function(lambda: self.admission.queued)
        bind_metrics = getattr(backend, "bind_metrics", None)  # a backend with figures of its own
        if bind_metrics is not None:
            bind_metrics(self.metrics)
        self._ids = itertools.count(1)
        self._adapter_lock = asyncio.Lock()
        # Tokenizing a long prompt takes tens of milliseconds of CPU: done here, the event loop
        # keeps answering health checks and streaming tokens meanwhile (one thread: one tokenizer).
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tokenize")

    async def start(self) -> None:
        """Load the model, then the adapters named in the settings."""
        await self.backend.start()
        for name in filter(None, (n.strip() for n in self.settings.preload_adapters.split(","))):
            await self.load_adapter(name, "")

    async def close(self) -> None:
        """Release the backend (the model, its engine threads)."""
        await self.backend.close()

    @property
    def max_context_tokens(self) -> int:
        own = self.backend.max_context_tokens
        return min(own, self.settings.max_context_tokens) if self.settings.max_context_tokens else own

    def base_model(self) -> BaseModel:
        """What serves requests without an adapter: the configured source and what the backend loaded."""
        return BaseModel(
            source=self.settings.base_model,
            name=self.backend.model_name,
            sha256=self.backend.model_sha256,
            backend=self.backend.name,
            max_context_tokens=self.max_context_tokens,
        )

    # -- adapters -----------------------------------------------------------------------
    async def load_adapter(self, name: str, path: str) -> adapters.LoadedAdapter:
        async with self._adapter_lock:
            return await self._load(name, path)

    async def _load(self, name: str, path: str) -> adapters.LoadedAdapter:
        directory = adapters.locate(self.store, name, path)
        manifest = adapters.read_manifest(directory)
        adapters.check_base(manifest, self.backend.model_sha256, name)
        await self.backend.load_adapter(name, directory)
        record = adapters.loaded(name, directory, manifest)
        self.adapters[name] = record
        return record

    async def unload_adapter(self, name: str) -> None:
        adapters.validate_name(name)
        async with self._adapter_lock:
            if name not in self.adapters:
                raise NotFound("adapter", name, "it is not loaded; ListModels shows the loaded ones")
            await self.backend.unload_adapter(name)
            del self.adapters[name]

    async def _ensure_adapter(self, adapter: str) -> None:
        """NOT_FOUND for an adapter that is not loaded, unless it can be loaded from the store now."""
        if not adapter or adapter in self.adapters:
            return
        if self.settings.adapters_on_demand:
            adapters.validate_name(adapter, "adapter")
            async with self._adapter_lock:
                if adapter in self.adapters:  # a concurrent request loaded it meanwhile
                    return
                try:
                    await self._load(adapter, "")
                    return
                except NotFound:
                    pass  # not in the store either: the error below names what is loaded
        loaded = ", ".join(sorted(self.adapters)) or "none"
        raise NotFound("adapter", adapter, f"loaded adapters: {loaded}; load it with LoadAdapter")

    # -- tokens -------------------------------------------------------------------------
    async def tokenize(self, encode: Callable[[_T], list[int]], value: _T) -> list[int]:
        """``encode(value)`` on the tokenizer thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._tokenizer_thread, encode, value)

    async def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of the prompt as the model sees it (its chat template), whatever its length."""
        return await self.tokenize(self.backend.encode, prompt)

    async def prompt_ids(self, prompt: Prompt, max_new_tokens: int = 0) -> list[int]:
        """Token ids of the prompt; InvalidArgument stating both counts when it is too long."""
        ids = await self.encode_prompt(prompt)
        limit = self.max_context_tokens
        if len(ids) + max_new_tokens > limit:
            room = f" plus max_new_tokens {max_new_tokens}" if max_new_tokens else ""
            raise InvalidArgument(
                "input", f"the prompt has {len(ids)} tokens{room}, over the model's limit of {limit} tokens"
            )
        return ids

    # -- generation ---------------------------------------------------------------------
    async def stream(
        self, prompt: Prompt, adapter: str, sampling: Sampling, time_limit_ms: int = 0
    ) -> AsyncGenerator[StreamEvent, None]:
        """Generate, yielding text deltas and a final event; closing the iterator cancels."""
        validate_prompt(prompt)
        validate_sampling(sampling)
        await self._ensure_adapter(adapter)
        ids = await self.prompt_ids(prompt, sampling.max_new_tokens)
        async with self.admission.slot():
            self.metrics.active.inc()
            try:
                async for event in self._generate(ids, adapter, sampling, time_limit_ms, prompt):
                    yield event
            finally:
                self.metrics.active.dec()

    async def _generate(
        self, ids: list[int], adapter: str, sampling: Sampling, time_limit_ms: int, prompt: Prompt
    ) -> AsyncGenerator[StreamEvent, None]:
        started = time.perf_counter()
        request = GenerationRequest(
            request_id=f"gen-{next(self._ids)}",
            prompt_ids=tuple(ids),
            adapter=adapter,
            sampling=sampling,
            time_limit_s=time_limit_ms / 1000 if time_limit_ms else None,
            prompt=prompt,
        )
        text = TextAssembler(self.backend.decode, sampling.stop_sequences)
        completion = 0
        first_token_at = 0.0
        stop: StopReason = StopReason.CANCELLED
        chunks = self.backend.generate(request)
        try:
            async for chunk in chunks:
                if chunk.tokens and not first_token_at:
                    first_token_at = time.perf_counter()
                    self.metrics.ttft.labels(adapter).observe(first_token_at - started)
                completion += chunk.tokens
                delta, hit = (
                    text.add_ids(chunk.token_ids) if chunk.text is None else text.add_text(chunk.text)
                )
                if hit:
                    stop = StopReason.STOP_SEQUENCE
                    completion -= text.ids_past_stop
                    if delta:
                        yield StreamEvent(delta, completion)
                    break
                if chunk.stop is not None:
                    stop = chunk.stop
                    delta += text.finish()
                    if delta:
                        yield StreamEvent(delta, completion)
                    break
                if delta:
                    yield StreamEvent(delta, completion)
        finally:
            await chunks.aclose()  # stops the backend's work for this request at once
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(adapter, stop.value).inc()
            self.metrics.tokens.labels(adapter).inc(completion)
            if completion and elapsed > 0:
                self.metrics.tokens_per_second.labels(adapter).observe(completion / elapsed)
        yield StreamEvent(
            "",
            completion,
            stop=stop,
            prompt_tokens=len(ids),
            time_to_first_token_s=(first_token_at - started) if first_token_at else 0.0,
            total_time_s=time.perf_counter() - started,
        )

    async def generate(
        self, prompt: Prompt, adapter: str, sampling: Sampling, time_limit_ms: int = 0
    ) -> tuple[str, StreamEvent]:
        """The whole answer and the final event."""
        parts: list[str] = []
        final = StreamEvent("", 0)
        async for event in self.stream(prompt, adapter, sampling, time_limit_ms):
            parts.append(event.text)
            if event.stop is not None:
                final = event
        if final.stop is StopReason.ERROR:
            # A stream can end with STOP_REASON_ERROR after its deltas; a unary answer cut by an
            # engine failure is no answer, so it fails (INTERNAL, with the request id in the log).
            raise RuntimeError("generation failed in the inference backend; see the service log")
        return "".join(parts), final

    # -- scoring ------------------------------------------------------------------------
    async def score(self, context: Prompt | None, text: str, adapter: str) -> ScoreResult:
        """Log-probabilities of ``text`` after ``context`` under base or adapter."""
        if not text:
            raise InvalidArgument("text", "must not be empty")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidArgument("text", f"is {len(text):,} characters; at most {MAX_TEXT_CHARS:,}")
        if context is not None:
            validate_prompt(context, "context")
        await self._ensure_adapter(adapter)
        context_ids = await self.tokenize(self.backend.encode, context) if context is not None else []
        text_ids = await self.tokenize(self.backend.encode_text, text)
        total = len(context_ids) + len(text_ids)
        if total > self.max_context_tokens:
            raise InvalidArgument(
                "text",
                f"context and text have {total} tokens, over the model's limit of {self.max_context_tokens}",
            )
        async with self.admission.slot():
            return await self.backend.score(context_ids, text_ids, adapter)

    def adapter_path(self, name: str) -> Path:
        return self.adapters[name].path
