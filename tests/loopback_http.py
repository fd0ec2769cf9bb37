"""Local HTTP servers for tests that stand in for an OpenAI-compatible API (aiohttp on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields its API base URL, ``http://127.0.0.1:PORT/v1``."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_post(
    path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> AsyncIterator[str]:
    """Serve one POST endpoint (``/v1/chat/completions``, ``/v1/moderations``...) with ``handler``; yields the base URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    async with serve(app) as base_url:
        yield base_url


def api_error(status: int, message: str, **fields: Any) -> web.Response:
    """An error in OpenAI's format, ``{"error": {"message": ..., **fields}}``, with HTTP ``status``."""
    return web.json_response({"error": {"message": message, **fields}}, status=status)


def chat_completion(model: str, content: str) -> web.Response:
    """A ``POST /v1/chat/completions`` answer in OpenAI's documented (non-streaming) format."""
    return web.json_response(
        {
            "id": "chatcmpl-loopback",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
    )
