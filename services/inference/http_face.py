"""The OpenAI-compatible HTTP face, in the same process and over the same core as gRPC.

``/v1/models`` and ``/v1/chat/completions`` (with ``stream: true`` as server-sent events), so
the ``openai`` client, the generation service's LLM mode and other tools can use talklike.
``model`` is the base model's name (or source) for the base, or an adapter's name.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from talklike.common import errors
from talklike.common.auth import AUTH_METADATA_KEY, token_matches
from talklike.inference.core import InferenceCore
from talklike.inference.settings import InferenceSettings
from talklike.inference.types import ChatTurn, Prompt, Sampling, StopReason

#: Domain error → (HTTP status, OpenAI error type).
HTTP_ERRORS: dict[type[errors.TalklikeError], tuple[int, str]] = {
    errors.InvalidArgument: (400, "invalid_request_error"),
    errors.NotFound: (404, "not_found_error"),
    errors.PermissionDenied: (403, "permission_error"),
    errors.FailedPrecondition: (400, "invalid_request_error"),
    errors.ResourceExhausted: (429, "rate_limit_error"),
    errors.DeadlineExceeded: (504, "timeout_error"),
    errors.Unavailable: (503, "service_unavailable"),
}
FINISH_REASONS = {
    StopReason.MAX_TOKENS: "length",
    StopReason.EOS: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.TIME_LIMIT: "length",
    StopReason.CANCELLED: "stop",
    StopReason.ERROR: "error",
}


class HttpFace:
    """An aiohttp server on ``settings.http_port`` (0 = off)."""

    def __init__(self, core: InferenceCore, settings: InferenceSettings) -> None:
        self.core = core
        self.settings = settings
        self.port = 0
        self._runner: Any = None

    def base_names(self) -> set[str]:
        return {self.settings.base_model, self.core.backend.model_name}

    def app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def auth_and_errors(request: web.Request, handler: Any) -> web.StreamResponse:
            token = self.settings.auth_token
            presented = ((AUTH_METADATA_KEY, request.headers.get("Authorization", "")),)
            if token and not token_matches(presented, token):  # constant time, as on the gRPC side
                return error_response(401, "authentication_error", "missing or wrong bearer token")
            try:
                return await handler(request)
            except errors.TalklikeError as exc:
                status, kind = HTTP_ERRORS.get(type(exc), (500, "server_error"))
                return error_response(status, kind, exc.message, getattr(exc, "field", None))

        app = web.Application(middlewares=[auth_and_errors])
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        return app

    async def start(self) -> None:
        if not self.settings.http_port:
            return
        from aiohttp import web

        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        host, port = self.settings.host, self.settings.http_port
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            self._runner = None
            raise errors.FailedPrecondition(
                f"cannot serve the OpenAI-compatible HTTP face on {host}:{port} ({error.strerror}); "
                f"choose another port ({self.settings.env_prefix()}HTTP_PORT, 0 turns the face off)"
            ) from error
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def models(self, request: Any) -> Any:
        from aiohttp import web

        created = int(time.time())
        data = [
            {
                "id": self.core.backend.model_name,
                "object": "model",
                "created": created,
                "owned_by": "talklike",
            }
        ]
        data += [
            {
                "id": name,
                "object": "model",
                "created": int(a.loaded_at),
                "owned_by": "talklike",
                "parent": self.core.backend.model_name,
            }
            for name, a in sorted(self.core.adapters.items())
        ]
        return web.json_response({"object": "list", "data": data})

    def _parse(self, body: dict[str, Any]) -> tuple[Prompt, str, Sampling, str]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise errors.InvalidArgument("model", "is required: the base model's name or an adapter's")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise errors.InvalidArgument("messages", "must be a non-empty list of {role, content}")
        turns = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise errors.InvalidArgument(f"messages[{i}]", "must be an object with a string content")
            turns.append(ChatTurn(str(m.get("role", "")), m["content"]))
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise errors.InvalidArgument("stop", "must be a string or a list of strings")
        tokens_field = (
            "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        )
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise errors.InvalidArgument("seed", f"must be an integer, got {seed!r}")
        sampling = Sampling(
            temperature=number(body, "temperature", 1.0),
            top_p=number(body, "top_p", 1.0),
            max_new_tokens=int(number(body, tokens_field, 128, integer=True)),
            stop_sequences=tuple(stop),
            seed=seed,
            repetition_penalty=1.0,
        )
        adapter = "" if model in self.base_names() else model
        return Prompt(chat=tuple(turns)), adapter, sampling, model

    async def chat_completions(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            raise errors.InvalidArgument("body", f"is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise errors.InvalidArgument("body", "must be a JSON object")
        prompt, adapter, sampling, model = self._parse(body)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if not body.get("stream"):
            text, final = await self.core.generate(prompt, adapter, sampling)
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": FINISH_REASONS[final.stop or StopReason.ERROR],
                        }
                    ],
                    "usage": {
                        "prompt_tokens": final.prompt_tokens,
                        "completion_tokens": final.completion_tokens,
                        "total_tokens": final.prompt_tokens + final.completion_tokens,
                    },
                }
            )
        stream = self.core.stream(prompt, adapter, sampling)
        first = await anext(stream)  # errors (bad input, overload) become an HTTP error, not a broken stream
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None) -> None:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())

        try:
            await send({"role": "assistant", "content": ""}, None)
            event = first
            while True:
                if event.text:
                    await send({"content": event.text}, None)
                if event.stop is not None:
                    await send({}, FINISH_REASONS[event.stop])
                    break
                event = await anext(stream)
            await response.write(b"data: [DONE]\n\n")
        finally:
            await stream.aclose()
        return response


def number(body: dict[str, Any], field: str, default: Any, integer: bool = False) -> float:
    """A numeric request field (null = the default); anything else is a 400 naming the field, not a 500."""
    value = default if body.get(field) is None else body[field]
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "an integer" if integer else "a number"
        raise errors.InvalidArgument(field, f"must be {kind}, got {value!r}")
    return float(value)


def error_response(status: int, kind: str, message: str, param: str | None = None) -> Any:
    from aiohttp import web

    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": None}}, status=status
    )
