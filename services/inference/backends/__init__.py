"""Inference engines behind ``talklike.inference.backend.Backend``; each imports its engine lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from talklike.inference.backend import Backend
    from talklike.inference.settings import InferenceSettings


def create_backend(settings: InferenceSettings) -> Backend:
    """The backend the settings name."""
    if settings.backend == "vllm":
        from talklike.inference.backends.vllm_backend import VLLMBackend

        return VLLMBackend(settings)
    if settings.backend == "openai":
        from talklike.inference.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(settings)
    from talklike.inference.backends.transformers_backend import TransformersBackend

    return TransformersBackend(settings)
