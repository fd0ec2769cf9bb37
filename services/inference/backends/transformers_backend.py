"""The CPU backend: transformers + PEFT, with continuous batching and per-row adapters.

One engine thread decodes the running batch step by step. A request joins at the next step:
its prompt is prefilled then (with the other newcomers of that step, reusing the cached KV of
a shared prefix such as the persona's system prompt) and its rows are added to the batch's
cache (``talklike.inference.batching``); a row that finishes, is cancelled or runs out of time
leaves at once and its slot takes the next request. So a request waits for one decode step and
its own prefill, not for other people's answers. Each row has its own sampling settings, seed
and adapter — PEFT's ``adapter_names`` applies a different LoRA (or none, ``__base__``) per row
of one forward pass. Tokens go out at most every ``stream_interval_ms`` (the first at once):
with a fast model, a message per token would cost the event loop more than the decoding.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talklike.inference.batching import PrefillRow, RunningBatch, kept_columns, layer_windows, prefill_inputs
from talklike.inference.prefix_cache import PrefixCache, PrefixFinder
from talklike.inference.settings import InferenceSettings
from talklike.inference.tokenizing import ChatTokenizer, TokenizerMethods
from talklike.inference.types import Chunk, GenerationRequest, Sampling, ScoreResult, StopReason

if TYPE_CHECKING:
    from talklike.inference.metrics import InferenceMetrics

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
    #: Leading prompt ids worth a prefix cache entry (0: none).
    shared: int = 0

    def send(self, chunk: Chunk) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, chunk)


def _deliver(outbox: list[tuple[_Row, Chunk]]) -> None:
    for row, chunk in outbox:
        row.queue.put_nowait(chunk)


def _fail(rows: list[_Row]) -> None:
    """End these rows' streams with ERROR."""
    for row in rows:
        row.send(Chunk(stop=StopReason.ERROR))


def _contiguous_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A forward pre-hook: the output layer's input as one contiguous block.

    ``logits_to_keep=1`` hands the head the last position of a batched prefill as a strided
    view. With the head frozen (PEFT freezes the base model) torch's matmul does not fold that
    3-D view into one product but multiplies it row by row against the broadcast 262k-row weight
    (Gemma 3): 48 rows took 1.1 s in float32 and about 60 s in bfloat16, against 0.09 s and 0.03 s
    contiguous (bench/bench_output_layer.py); a decode step's input is contiguous already.
    """
    return (args[0].contiguous(), *args[1:])


def default_torch_threads() -> int:
    """One fewer thread than the CPUs this process may use, at least one.

    With a thread per CPU, torch's workers spin between decode steps on every core, and the
    event loop that hands tokens to the streams waits for a core: measured on 2 CPUs (tiny,
    8 concurrent streams), 1,400–1,700 tokens/s with two threads against 3,300–5,300 with one.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, usable - 1)


class TransformersBackend(TokenizerMethods):
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
        #: The base weights' torch dtype (settings.dtype, auto resolved at load).
        self.dtype = "float32"
        self._lock = threading.Lock()  # one forward pass at a time
        self._adapters: set[str] = set()
        self.prefixes = PrefixCache(settings.prefix_cache_entries, settings.prefix_cache_mb * 2**20)
        self._finder: PrefixFinder | None = None
        #: The longest prefix whose KV every layer can hold (a sliding layer keeps its window less one).
        self._prefix_limit = 0
        # The engine thread's state: requests waiting for the next step, the rows being decoded.
        self._wake = threading.Condition()
        self._pending: deque[_Row] = deque()
        self._rows: list[_Row] = []
        self._batch: RunningBatch | None = None
        self._stopping = False
        self._engine: threading.Thread | None = None

    def bind_metrics(self, metrics: InferenceMetrics) -> None:
        """Report the prefix cache's lookups, evictions and size into the service's metrics."""
        self.prefixes.metrics = metrics
        metrics.prefix_entries.set_function(lambda: self.prefixes.entries)
        metrics.prefix_bytes.set_function(lambda: self.prefixes.bytes)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._engine = threading.Thread(target=self._run, name="transformers-engine", daemon=True)
        self._engine.start()

    def _load(self) -> None:
        import torch
        from talklike.inference.batching import new_cache
        from talklike.models import load, resolve
        from talklike.models.precision import serving_dtype

        torch.set_num_threads(self.settings.torch_threads or default_torch_threads())
        resolved = resolve(self.settings.base_model, self.settings.home / "models")
        self.dtype = serving_dtype(self.settings.dtype, self.device)
        self.base_model, tokenizer = load(resolved, self.device, self.dtype)
        self.base_model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
        self.model = self.base_model
        self.tokens = ChatTokenizer(tokenizer)
        self._finder = PrefixFinder(self.tokens)
        self.model_name, self.model_sha256 = resolved.name, resolved.sha256
        self.max_context_tokens = int(getattr(self.base_model.config, "max_position_embeddings", 2048))
        windows = layer_windows(new_cache(self.base_model.config))
        self._prefix_limit = min(kept_columns(self.max_context_tokens, w) for w in windows)
        log.info("serving %s on %s in %s", resolved.name, self.device, self.dtype)

    async def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._engine is not None:
            await asyncio.to_thread(self._engine.join)
            self._engine = None

    # -- generation ---------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        # Found here, not in the engine thread: a fast tokenizer must not be used from two threads at once.
        row = _Row(request, asyncio.get_running_loop(), asyncio.Queue(), shared=self._shared_length(request))
        if request.time_limit_s:
            row.deadline = time.monotonic() + request.time_limit_s
        with self._wake:
            if self._stopping:
                raise RuntimeError("the transformers backend is closed")
            self._pending.append(row)
            self._wake.notify()
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

    def _run(self) -> None:
        """The engine thread: admit newcomers, decode a step, until closed."""
        import torch

        while True:
            with self._wake:
                while not (self._stopping or self._pending or self._rows):
                    self._wake.wait()
                if self._stopping:
                    break
                joiners: list[_Row] = []
                while self._pending and len(self._rows) + len(joiners) < self.settings.max_concurrency:
                    row = self._pending.popleft()
                    if not row.cancelled.is_set():
                        joiners.append(row)
            try:
                with torch.inference_mode():
                    self._step(joiners)
            except Exception:
                log.exception("generation step failed")
                _fail(self._rows + [r for r in joiners if r not in self._rows])
                self._rows, self._batch = [], None
        with self._wake:
            left = self._rows + list(self._pending)
            self._pending.clear()
        _fail(left)

    def _step(self, joiners: list[_Row]) -> None:
        """One iteration: drop rows whose client left, prefill the newcomers into the batch, decode a token."""
        self._keep([i for i, r in enumerate(self._rows) if not r.cancelled.is_set()])
        if joiners:
            try:
                self._join(joiners)
            except Exception:
                # The running rows' cache is untouched until the newcomers' is added: only they fail
                # (an adapter unloaded between admission and prefill, say).
                log.exception("prefill failed")
                _fail([r for r in joiners if r not in self._rows])
        if not self._rows:
            return
        import torch

        assert self._batch is not None
        mask, positions = self._batch.step_inputs()
        last = torch.tensor([[r.generated[-1]] for r in self._rows])
        logits, cache = self._forward(last, mask, positions, self._batch.cache, self._rows)
        self._batch.stepped(mask, cache)
        self._keep(self._emit(self._rows, logits))

    def _keep(self, indices: list[int]) -> None:
        if len(indices) == len(self._rows):
            return
        self._rows = [self._rows[i] for i in indices]
        if not self._rows:
            self._batch = None
        elif self._batch is not None:
            self._batch.keep(indices)

    def _join(self, joiners: list[_Row]) -> None:
        """Prefill the newcomers (one forward pass), send their first tokens, and add them to the batch."""
        import torch

        for row in joiners:
            seed = row.request.sampling.seed
            row.generator = torch.Generator(device=self.device).manual_seed(
                seed if seed is not None else random.getrandbits(63)
            )
        rows, lengths = [], []
        for row in joiners:
            ids, shared = row.request.prompt_ids, row.shared
            entry = self.prefixes.get(row.request.adapter, ids[:shared]) if shared else None
            rows.append(PrefillRow(ids, entry.layers, shared) if entry else PrefillRow(ids))
            lengths.append(0 if entry else shared)
        tok = self._tok()
        inputs = prefill_inputs(rows, self.base_model.config, tok.tokenizer.pad_token_id or 0)
        logits, cache = self._forward(
            inputs.input_ids, inputs.mask, inputs.position_ids, inputs.cache, joiners
        )
        self._remember_prefixes(joiners, lengths, cache, inputs.mask.shape[1])
        positions = torch.tensor([len(r.request.prompt_ids) for r in joiners])
        batch = RunningBatch(cache, inputs.mask, positions)
        kept = self._emit(joiners, logits)
        if len(kept) < len(joiners):
            if not kept:
                return
            batch.keep(kept)
            joiners = [joiners[i] for i in kept]
        if self._batch is None:
            self._batch = batch
        else:
            self._batch.extend(batch)
        self._rows.extend(joiners)

    def _shared_length(self, request: GenerationRequest) -> int:
        """How many of the request's prompt ids are a shared prefix worth caching (0: none)."""
        if not self.prefixes.enabled or self._finder is None:
            return 0
        shared = self._finder.length(request.prompt, request.prompt_ids)
        return shared if shared <= self._prefix_limit else 0

    def _remember_prefixes(self, joiners: list[_Row], lengths: list[int], cache: Any, width: int) -> None:
        """Keep the KV of the shared prefixes just computed (copied out of the prefill's cache)."""
        for i, (row, shared) in enumerate(zip(joiners, lengths, strict=True)):
            if not shared:
                continue
            start = width - len(row.request.prompt_ids)  # the row's first column
            layers = []
            for layer in cache.layers:
                first = start - (width - layer.keys.shape[-2])  # a sliding layer holds only its last columns
                if first < 0:
                    break
                layers.append(
                    (
                        layer.keys[i : i + 1, :, first : first + shared].clone(),
                        layer.values[i : i + 1, :, first : first + shared].clone(),
                    )
                )
            else:
                self.prefixes.put(row.request.adapter, row.request.prompt_ids[:shared], layers)

    def _forward(
        self, input_ids: Any, mask: Any, positions: Any, cache: Any, rows: list[_Row]
    ) -> tuple[Any, Any]:
        """One forward pass over the rows; the last position's logits (float) and the grown cache."""
        kwargs: dict[str, Any] = {}
        if self._adapters:
            kwargs["adapter_names"] = [r.request.adapter or BASE for r in rows]
        with self._lock:
            out = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
                **kwargs,
            )
        return out.logits[:, -1, :].float(), out.cache

    def _emit(self, rows: list[_Row], logits: Any) -> list[int]:
        """Sample each row's next token and stream it; the indices of the rows that go on."""
        tok = self._tok()
        interval_s = self.settings.stream_interval_ms / 1000
        keep: list[int] = []
        outbox: dict[asyncio.AbstractEventLoop, list[tuple[_Row, Chunk]]] = {}
        now = time.monotonic()
        for i, row in enumerate(rows):
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
                outbox.setdefault(row.loop, []).append((row, Chunk(token_ids=row.unsent, stop=stop)))
                row.unsent, row.sent_at = [], now
            if stop is None:
                keep.append(i)
        for loop, chunks in outbox.items():  # one wake-up of each event loop per step, not one per row
            loop.call_soon_threadsafe(_deliver, chunks)
        return keep

    @staticmethod
    def _sample(logits: Any, row: _Row) -> int:
        import torch

        s: Sampling = row.request.sampling
        if s.repetition_penalty != 1.0:
            logits = logits.clone()  # the row's own copy: the penalty writes into it
            seen = torch.tensor(sorted(set(row.request.prompt_ids) | set(row.generated)))
            values = logits[seen]
            logits[seen] = torch.where(
                values > 0, values / s.repetition_penalty, values * s.repetition_penalty
            )
        if (s.presence_penalty or s.frequency_penalty) and row.generated:
            if s.repetition_penalty == 1.0:
                logits = logits.clone()  # the row's own copy: the penalty writes into it
            ids, counts = torch.tensor(row.generated).unique(return_counts=True)
            logits[ids] -= s.presence_penalty + s.frequency_penalty * counts.to(logits.dtype)
        if s.temperature == 0.0:
            return int(torch.argmax(logits))
        logits = logits / s.temperature
        # With top-k, sample among the k candidates themselves: the same distribution as masking
        # the rest to -inf, without a softmax, sort and draw over the whole vocabulary (262k
        # words for Gemma) for every row of every step.
        candidates = None
        if s.top_k and s.top_k < logits.shape[-1]:
            logits, candidates = torch.topk(logits, s.top_k)
        probs = torch.softmax(logits, dim=-1)
        if s.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = sorted_probs.cumsum(-1)
            cut = cumulative - sorted_probs > s.top_p
            sorted_probs[cut] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
            probs = probs / probs.sum()
        choice = int(torch.multinomial(probs, 1, generator=row.generator))
        return int(candidates[choice]) if candidates is not None else choice

    # -- scoring ------------------------------------------------------------------------
    async def score(self, context_ids: list[int], text_ids: list[int], adapter: str) -> ScoreResult:
        return await asyncio.to_thread(self._score, context_ids, text_ids, adapter)

    def _score(self, context_ids: list[int], text_ids: list[int], adapter: str) -> ScoreResult:
        import torch

        # Without context the text's first token has nothing before it and is not scored.
        ids = list(context_ids) + list(text_ids)
        first = max(len(context_ids) - 1, 0)
        scored_ids = ids[first + 1 :]
        kwargs: dict[str, Any] = {"adapter_names": [adapter or BASE]} if self._adapters else {}
        # The LM head only at the positions that predict the text (and the last, dropped): on a
        # 262k-word vocabulary (Gemma 3) that takes a Score of a 60-token answer after a 70-token prompt
        # from 2.3-2.4 s to 1.6-1.8 s.
        with self._lock, torch.inference_mode():
            output = self.model(
                input_ids=torch.tensor([ids], device=self.device), logits_to_keep=len(ids) - first, **kwargs
            )
        logprobs = torch.log_softmax(output.logits[0, :-1].float(), dim=-1)
        targets = torch.tensor(scored_ids, device=self.device)
        scored = logprobs.gather(1, targets.unsqueeze(-1)).squeeze(-1)
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
            self.prefixes.drop_adapter(name)  # cached KV computed under the old weights
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
            self.prefixes.drop_adapter(name)
            self._adapters.discard(name)
            if not self._adapters:
                self.model = self.model.unload()  # back to the plain base model
                self.base_model = self.model
            else:
                self.model.delete_adapter(name)
