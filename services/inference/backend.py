"""The one Protocol every inference engine implements (transformers, vLLM, OpenAI).

Backends only turn prompt token ids into generated token ids (or text) for a named adapter;
everything a client sees — validation, admission, stop sequences, text deltas, metrics — is
the core's, so the three engines behave the same through the same servicer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Protocol

from talklike.inference.types import Chunk, GenerationRequest, Prompt, ScoreResult


class Backend(Protocol):
    """An inference engine serving one base model and any number of adapters."""

    name: str
    #: Most prompt + answer tokens.
    max_context_tokens: int
    #: Short name and weights hash of the base model, for ListModels.
    model_name: str
    model_sha256: str

    async def start(self) -> None:
        """Load the model (slow); called before the service reports SERVING."""

    async def close(self) -> None:
        """Release the engine."""

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt (chat template applied to a chat, with the assistant prefix)."""

    def encode_text(self, text: str) -> list[int]:
        """Token ids of plain text (no special tokens)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (special tokens dropped)."""

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Generate; the last chunk carries the stop reason. Closing the iterator cancels it."""

    async def score(self, context_ids: list[int], text_ids: list[int], adapter: str) -> ScoreResult:
        """Log-probabilities of ``text_ids`` following ``context_ids``."""

    async def load_adapter(self, name: str, path: Path) -> None:
        """Load (or replace) an adapter under ``name``."""

    async def unload_adapter(self, name: str) -> None:
        """Forget an adapter."""
