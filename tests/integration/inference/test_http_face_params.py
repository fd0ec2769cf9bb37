"""The OpenAI-compatible face refuses what it does not serve, naming the parameter (issue 15, cause 11).

It used to drop ``n``, ``logprobs``, ``response_format``, ``tools`` and ``stream_options`` without a
word; now each is a 400 whose ``param`` names it, unless its value asks for nothing more than
the face does. ``stream_options.include_usage`` is served: the stream ends with a chunk that has
no choices and the usage, as the ``openai`` client expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from talklike.common.testing import running_service
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings

MESSAGES: list[Any] = [{"role": "user", "content": "Jak hodnotíte inflaci?"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
REFUSED: dict[str, dict[str, Any]] = {
    "n": {"n": 2},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"top_logprobs": 3},
    "response_format": {"response_format": {"type": "json_object"}},
    "tools": {"tools": [TOOL]},
    "tool_choice": {"tool_choice": "required"},
    "presence_penalty": {"presence_penalty": 2.5},  # supported, within -2 .. 2
    "stream_options": {"stream_options": {"include_usage": True}},  # without stream: true
    "stream_options.include_obfuscation": {"stream": True, "stream_options": {"include_obfuscation": True}},
}


async def test_unsupported_parameters_are_refused_and_usage_is_streamed(
    tiny_home: Path, free_port: Callable[[], int]
) -> None:
    port = free_port()
    settings = InferenceSettings(home=tiny_home, base_model="tiny", port=0, metrics_port=0, http_port=port)
    async with running_service(create_service(settings), settings):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)

        def calls() -> tuple[dict[str, str], list[Any], Any]:
            params = {}
            for name, extra in REFUSED.items():
                with pytest.raises(openai.BadRequestError) as caught:
                    client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, **extra)
                params[name] = str(caught.value.param)
            chunks = list(
                client.chat.completions.create(
                    model="tiny",
                    messages=MESSAGES,
                    max_tokens=6,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            defaults = client.chat.completions.create(
                model="tiny",
                messages=MESSAGES,
                max_tokens=4,
                n=1,
                logprobs=False,
                response_format={"type": "text"},
                presence_penalty=0.5,
                frequency_penalty=0.5,
            )
            return params, chunks, defaults

        params, chunks, defaults = await asyncio.to_thread(calls)
    assert params == {name: name for name in REFUSED}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens > 0 and 1 <= last.usage.completion_tokens <= 6
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert defaults.choices[0].message.content is not None
