"""A shared-prefix KV cache: the keys and values of a prompt's repeated beginning, computed once.

Every request of a persona starts with the same system prompt in the same chat-template
framing; its KV depends only on those tokens (attention is causal), on the base model and on
the adapter. So the backend keeps it per (adapter, prefix token ids) and prefills only the rest
of a prompt. Where the shared part ends is found by tokenizing the chat once more with a
stand-in user message (once per system prompt): the tokens both renderings share are the
framing and the system text. Any prefix of a prompt's ids is exact to reuse, so a boundary
found a token short or long costs a miss, never a wrong answer.

Bounded by entries and bytes, least recently used first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from talklike.inference.types import ChatTurn, Prompt

if TYPE_CHECKING:
    from talklike.inference.metrics import InferenceMetrics
    from talklike.inference.tokenizing import ChatTokenizer

#: Shorter shared beginnings are not worth an entry: prefilling a few tokens costs less than a lookup's copy.
MIN_PREFIX_TOKENS = 8
#: System prompts whose framing is remembered (one tokenization of two short chats each).
SYSTEM_PROMPTS_REMEMBERED = 256
#: Two stand-in user messages: the boundary is where the prompt parts from both.
PROBES = ("A", "7")


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PrefixFinder:
    """Where the shared part of a chat prompt ends: its system message and the template around it."""

    def __init__(self, tokens: ChatTokenizer) -> None:
        self.tokens = tokens
        self._probes: OrderedDict[str, tuple[list[int], ...]] = OrderedDict()
        self._lock = threading.Lock()

    def length(self, prompt: Prompt | None, ids: Sequence[int]) -> int:
        """Tokens of ``ids`` that other prompts with the same system message share; 0 if not worth caching."""
        if prompt is None or not prompt.chat or len(prompt.chat) < 2 or prompt.chat[0].role != "system":
            return 0
        probes = self._framing(prompt.chat[0])
        shared = min(common_length(ids, probe) for probe in probes)
        shared = min(shared, len(ids) - 1)  # at least one token left to prefill: it gives the first logits
        return shared if shared >= MIN_PREFIX_TOKENS else 0

    def _framing(self, system: ChatTurn) -> tuple[list[int], ...]:
        with self._lock:
            if system.content in self._probes:
                self._probes.move_to_end(system.content)
                return self._probes[system.content]
        probes = tuple(self.tokens.encode(Prompt(chat=(system, ChatTurn("user", probe)))) for probe in PROBES)
        with self._lock:
            self._probes[system.content] = probes
            while len(self._probes) > SYSTEM_PROMPTS_REMEMBERED:
                self._probes.popitem(last=False)
        return probes


@dataclass(frozen=True)
class PrefixEntry:
    """The KV of ``ids`` under one adapter: per layer (keys, values), each [1, heads, len(ids), dim]."""

    adapter: str
    ids: tuple[int, ...]
    layers: tuple[tuple[Any, Any], ...]
    nbytes: int


class PrefixCache:
    """LRU map (adapter, prefix ids) → KV, bounded by entries and bytes; 0 entries turns it off."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], PrefixEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.metrics: InferenceMetrics | None = None

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    @property
    def entries(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, adapter: str, ids: Sequence[int]) -> PrefixEntry | None:
        """The entry for exactly these ids under this adapter (now the most recently used), counted as hit or miss."""
        key = (adapter, tuple(ids))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if self.metrics is not None:
            self.metrics.prefix_lookups.labels("hit" if entry else "miss").inc()
            if entry is not None:
                self.metrics.prefix_reused_tokens.inc(len(entry.ids))
        return entry

    def put(self, adapter: str, ids: Sequence[int], layers: Sequence[tuple[Any, Any]]) -> None:
        """Remember a prefix's KV (tensors the caller will not change), evicting the least recently used."""
        nbytes = sum(
            int(k.nelement() * k.element_size() + v.nelement() * v.element_size()) for k, v in layers
        )
        if not self.enabled or nbytes > self.max_bytes:
            return
        entry = PrefixEntry(adapter, tuple(ids), tuple(layers), nbytes)
        evicted = 0
        with self._lock:
            old = self._entries.pop((adapter, entry.ids), None)
            self._bytes += nbytes - (old.nbytes if old else 0)
            self._entries[(adapter, entry.ids)] = entry
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes
                evicted += 1
        if evicted and self.metrics is not None:
            self.metrics.prefix_evictions.inc(evicted)

    def drop_adapter(self, adapter: str) -> None:
        """Forget an adapter's entries (it was replaced or unloaded: its KV no longer holds)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == adapter]:
                self._bytes -= self._entries.pop(key).nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
