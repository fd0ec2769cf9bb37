"""The CPU backend: transformers + PEFT, with dynamic batching and per-row adapters.

Requests that arrive together are decoded together: a *wave* takes every waiting request
(up to ``max_concurrency``), left-pads the prompts into one batch and decodes step by step
with a shared KV cache. Each row has its own sampling settings, seed and adapter — PEFT's
``adapter_names`` applies a different LoRA (or none, ``__base__``) per row of one forward
pass. Rows that finish (or are cancelled, or run out of time) leave the batch at once, so a
cancelled request stops costing compute within one step. Requests that arrive mid-wave wait
for the next one (after ``batch_wait_ms`` for company). Tokens go out at most every
``stream_interval_ms`` (the first at once): with a fast model, a message per token would cost
the event loop more than the decoding.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talklike.inference.settings import InferenceSettings
from talklike.inference.tokenizing import ChatTokenizer
from talklike.inference.types import Chunk, GenerationRequest, Prompt, Sampling, ScoreResult, StopReason

log = logging.getLogger(__name__)
BASE = "__base__"


@dataclass
class _Row:
    """One request in flight: where its chunks go and when it must stop."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Chunk]
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)
    sent_at: float = 0.0
    deadline: float | None = None
    generator: Any = None

    def send(self, chunk: Chunk) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, chunk)


def _deliver(outbox: list[tuple[_Row, Chunk]]) -> None:
    for row, chunk in outbox:
        row.queue.put_nowait(chunk)


def default_torch_threads() -> int:
    """One fewer thread than the CPUs this process may use, at least one.

    With a thread per CPU, torch's workers spin between decode steps on every core, and the
    event loop that hands tokens to the streams waits for a core: measured on 2 CPUs (tiny,
    8 concurrent streams), 1,400–1,700 tokens/s with two threads against 3,300–5,300 with one.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, usable - 1)


class TransformersBackend:
    """transformers + PEFT on CPU (or any torch device)."""

    name = "transformers"

    def __init__(self, settings: InferenceSettings, device: str = "cpu") -> None:
        self.settings = settings
        self.device = device
        self.model: Any = None
        self.base_model: Any = None
        self.tokens: ChatTokenizer | None = None
        self.max_context_tokens = 2048
        self.model_name = settings.base_model
        self.model_sha256 = ""
        self._lock = threading.Lock()  # one forward pass at a time
        self._pending: list[_Row] = []
        self._wakeup: asyncio.Event | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._adapters: set[str] = set()

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._wakeup = asyncio.Event()
        self._scheduler = asyncio.create_task(self._schedule(), name="transformers-batcher")

    def _load(self) -> None:
        import torch
        from talklike.models import load, resolve

        torch.set_num_threads(self.settings.torch_threads or default_torch_threads())
        resolved = resolve(self.settings.base_model, self.settings.home / "models")
        self.base_model, tokenizer = load(resolved, self.device)
        self.model = self.base_model
        self.tokens = ChatTokenizer(tokenizer)
        self.model_name, self.model_sha256 = resolved.name, resolved.sha256
        self.max_context_tokens = int(getattr(self.base_model.config, "max_position_embeddings", 2048))

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)

    # -- tokens -------------------------------------------------------------------------
    def _tok(self) -> ChatTokenizer:
        if self.tokens is None:
            raise RuntimeError("the backend has not been started")
        return self.tokens

    def encode(self, prompt: Prompt) -> list[int]:
        return self._tok().encode(prompt)

    def encode_text(self, text: str) -> list[int]:
        return self._tok().encode_text(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok().decode(ids)

    # -- generation ---------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        row = _Row(request, asyncio.get_running_loop(), asyncio.Queue())
        if request.time_limit_s:
            row.deadline = time.monotonic() + request.time_limit_s
        self._pending.append(row)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            while True:
                chunk = await row.queue.get()
                while chunk.stop is None and not row.queue.empty():
                    # A slow reader gets what piled up in one piece: fewer messages, same tokens.
                    following = row.queue.get_nowait()
                    chunk = Chunk(token_ids=chunk.token_ids + following.token_ids, stop=following.stop)
                yield chunk
                if chunk.stop is not None:
                    return
        finally:
            row.cancelled.set()  # a closed stream (client gone, stop sequence) leaves the batch

    async def _schedule(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._gather_company()
            while self._pending:
                wave = self._pending[: self.settings.max_concurrency]
                del self._pending[: len(wave)]
                wave = [r for r in wave if not r.cancelled.is_set()]
                if not wave:
                    continue
                try:
                    await asyncio.to_thread(self._run_wave, wave)
                except Exception:
                    log.exception("generation batch failed")
                    for row in wave:
                        row.send(Chunk(stop=StopReason.ERROR))

    async def _gather_company(self) -> None:
        """Wait while requests keep arriving (up to 4 × batch_wait_ms), so a burst lands in one batch.

        Concurrent clients' requests reach the server spread over a few milliseconds; a fixed
        short wait would split them into waves that run one after another.
        """
        wait_s = self.settings.batch_wait_ms / 1000
        if not wait_s:
            return
        deadline = time.monotonic() + 4 * wait_s
        seen = -1
        while len(self._pending) != seen and len(self._pending) < self.settings.max_concurrency:
            seen = len(self._pending)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(wait_s)

    def _run_wave(self, rows: list[_Row]) -> None:
        """Decode a batch to the end (runs in a worker thread)."""
        import torch

        tok = self._tok()
        for row in rows:
            seed = row.request.sampling.seed
            row.generator = torch.Generator(device=self.device).manual_seed(
                seed if seed is not None else random.getrandbits(63)
            )
        width = max(len(r.request.prompt_ids) for r in rows)
        pad = tok.tokenizer.pad_token_id or 0
        input_ids = torch.tensor(
            [[pad] * (width - len(r.request.prompt_ids)) + list(r.request.prompt_ids) for r in rows]
        )
        mask = torch.tensor(
            [[0] * (width - len(r.request.prompt_ids)) + [1] * len(r.request.prompt_ids) for r in rows]
        )
        past: Any = None
        active = list(rows)
        interval_s = self.settings.stream_interval_ms / 1000
        while active:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            step_positions = positions if past is None else positions[:, -1:]
            kwargs: dict[str, Any] = {}
            if self._adapters:
                kwargs["adapter_names"] = [r.request.adapter or BASE for r in active]
            with self._lock, torch.inference_mode():
                out = self.model(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=step_positions.to(self.device),
                    cache=past,
                    use_cache=True,
                    **kwargs,
                )
            past = out.cache
            logits = out.logits[:, -1, :].float()
            keep: list[int] = []
            next_tokens: list[int] = []
            outbox: list[tuple[_Row, Chunk]] = []
            now = time.monotonic()
            for i, row in enumerate(active):
                if row.cancelled.is_set():
                    continue  # the client is gone: nobody to send to
                token = self._sample(logits[i], row)
                row.generated.append(token)
                stop = None
                if token in tok.eos_ids:
                    stop = StopReason.EOS
                elif len(row.generated) >= row.request.sampling.max_new_tokens:
                    stop = StopReason.MAX_TOKENS
                elif row.deadline is not None and now >= row.deadline:
                    stop = StopReason.TIME_LIMIT
                if stop is not StopReason.EOS:
                    row.unsent.append(token)
                if stop is not None or len(row.generated) == 1 or now - row.sent_at >= interval_s:
                    outbox.append((row, Chunk(token_ids=row.unsent, stop=stop)))
                    row.unsent, row.sent_at = [], now
                if stop is None:
                    keep.append(i)
                    next_tokens.append(token)
            if outbox:  # one wake-up of the event loop per step, not one per row
                outbox[0][0].loop.call_soon_threadsafe(_deliver, outbox)
            if len(keep) < len(active):
                if not keep:
                    return
                index = torch.tensor(keep)
                past.batch_select_indices(index.to(self.device))
                mask = mask[index]
                active = [active[i] for i in keep]
            input_ids = torch.tensor(next_tokens).unsqueeze(-1)
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype)], dim=-1)

    @staticmethod
    def _sample(logits: Any, row: _Row) -> int:
        import torch

        s: Sampling = row.request.sampling
        logits = logits.clone()  # a normal tensor: the forward pass returned an inference-mode one
        if s.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(row.request.prompt_ids) | set(row.generated)))
            values = logits[seen]
            logits[seen] = torch.where(
                values > 0, values / s.repetition_penalty, values * s.repetition_penalty
            )
        if s.temperature == 0.0:
            return int(torch.argmax(logits))
        logits = logits / s.temperature
        if s.top_k:
            threshold = torch.topk(logits, min(s.top_k, logits.shape[-1])).values[-1]
            logits = logits.masked_fill(logits < threshold, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if s.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = sorted_probs.cumsum(-1)
            cut = cumulative - sorted_probs > s.top_p
            sorted_probs[cut] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
            probs = probs / probs.sum()
        return int(torch.multinomial(probs, 1, generator=row.generator))

    # -- scoring ------------------------------------------------------------------------
    async def score(self, context_ids: list[int], text_ids: list[int], adapter: str) -> ScoreResult:
        return await asyncio.to_thread(self._score, context_ids, text_ids, adapter)

    def _score(self, context_ids: list[int], text_ids: list[int], adapter: str) -> ScoreResult:
        import torch

        # Without context the text's first token has nothing before it and is not scored.
        ids = list(context_ids) + list(text_ids)
        kwargs: dict[str, Any] = {"adapter_names": [adapter or BASE]} if self._adapters else {}
        with self._lock, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.device), **kwargs).logits[0].float()
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        targets = torch.tensor(ids[1:], device=self.device)
        picked = logprobs.gather(1, targets.unsqueeze(-1)).squeeze(-1)
        first = max(len(context_ids) - 1, 0)
        scored = picked[first:]
        scored_ids = ids[first + 1 :]
        tok = self._tok()
        tokens = tuple(
            (tok.decode([t]), float(lp)) for t, lp in zip(scored_ids, scored.tolist(), strict=True)
        )
        return ScoreResult(total_logprob=float(scored.sum()), token_count=len(scored_ids), tokens=tokens)

    # -- adapters -----------------------------------------------------------------------
    async def load_adapter(self, name: str, path: Path) -> None:
        await asyncio.to_thread(self._load_adapter, name, path)

    def _load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        with self._lock:
            if name in self._adapters:
                self.model.delete_adapter(name)
                self._adapters.discard(name)
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(
                    self.base_model, str(path), adapter_name=name, is_trainable=False
                )
            self.model.eval()
            self._adapters.add(name)

    async def unload_adapter(self, name: str) -> None:
        await asyncio.to_thread(self._unload_adapter, name)

    def _unload_adapter(self, name: str) -> None:
        with self._lock:
            self._adapters.discard(name)
            if not self._adapters:
                self.model = self.model.unload()  # back to the plain base model
                self.base_model = self.model
            else:
                self.model.delete_adapter(name)
