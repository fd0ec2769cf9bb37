"""The OpenAI-compatible HTTP face, called by the official ``openai`` client (as other tools do)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from talklike.common.testing import running_service
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_openai_client_lists_models_and_chats_with_base_and_adapter(tiny_home: Path) -> None:
    http_port = free_port()
    settings = InferenceSettings(
        home=tiny_home,
        base_model="tiny",
        port=0,
        metrics_port=0,
        http_port=http_port,
        preload_adapters="persona",
    )
    async with running_service(create_service(settings), settings):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key="unused", max_retries=0)

        def calls() -> tuple[list[str], str, str, str]:
            models = [m.id for m in client.models.list().data]
            messages = [{"role": "user", "content": "Jak hodnotíte inflaci?"}]
            base = client.chat.completions.create(
                model="tiny", messages=messages, max_tokens=12, temperature=0
            )
            tuned = client.chat.completions.create(
                model="persona", messages=messages, max_tokens=12, temperature=0
            )
            parts = [
                chunk.choices[0].delta.content or ""
                for chunk in client.chat.completions.create(
                    model="persona", messages=messages, max_tokens=12, temperature=0, stream=True
                )
                if chunk.choices
            ]
            assert base.usage is not None and base.usage.completion_tokens > 0
            assert base.choices[0].finish_reason in ("length", "stop")
            return (
                models,
                base.choices[0].message.content or "",
                tuned.choices[0].message.content or "",
                "".join(parts),
            )

        models, base, tuned, streamed = await asyncio.to_thread(calls)
        assert models == ["tiny", "persona"]
        assert tuned == streamed and base != tuned

        def bad_calls() -> None:
            with pytest.raises(openai.NotFoundError, match="nobody"):
                client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "x"}])
            with pytest.raises(openai.BadRequestError, match="temperature"):
                client.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "x"}], temperature=5
                )

        await asyncio.to_thread(bad_calls)


async def test_malformed_fields_are_a_400_naming_the_field(tiny_home: Path) -> None:
    """What other tools send by mistake (null, strings for numbers, a list body) is a client error."""
    import httpx

    http_port = free_port()
    settings = InferenceSettings(
        home=tiny_home, base_model="tiny", port=0, metrics_port=0, http_port=http_port
    )
    async with running_service(create_service(settings), settings):
        url = f"http://127.0.0.1:{http_port}/v1/chat/completions"
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "Brusel?"}]}
        cases = [
            ({**chat, "temperature": "hot"}, "temperature"),
            ({**chat, "max_tokens": "many"}, "max_tokens"),
            ({**chat, "max_completion_tokens": 2.5}, "max_completion_tokens"),
            ({**chat, "seed": "x"}, "seed"),
            ({**chat, "stop": [1, 2]}, "stop"),
            (["not", "an", "object"], "body"),
        ]

        def post_all() -> list[tuple[int, dict[str, object]]]:
            with httpx.Client(timeout=60) as client:
                replies = [client.post(url, json=body) for body, _ in cases]
                fine = client.post(url, json={**chat, "temperature": None, "max_tokens": 3, "seed": 1})
            assert fine.status_code == 200 and fine.json()["usage"]["completion_tokens"] == 3, fine.text
            return [(r.status_code, r.json()["error"]) for r in replies]

        replies = await asyncio.to_thread(post_all)
    for (status, error), (_, field) in zip(replies, cases, strict=True):
        assert status == 400 and error["type"] == "invalid_request_error" and error["param"] == field, error


async def test_a_taken_http_port_fails_the_start_in_one_sentence_with_the_setting(tiny_home: Path) -> None:
    import socket

    from talklike.common.errors import FailedPrecondition

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = InferenceSettings(
            home=tiny_home, base_model="tiny", port=0, metrics_port=0, http_port=taken
        )
        with pytest.raises(FailedPrecondition) as caught:
            async with running_service(create_service(settings), settings):
                pass
    message = caught.value.message
    assert f"127.0.0.1:{taken}" in message and "TALKLIKE_INFERENCE_HTTP_PORT" in message
