"""The OpenAI-compatible HTTP face, in the same process and over the same core as gRPC.

``/v1/models`` and ``/v1/chat/completions`` (with ``stream: true`` as server-sent events), so
the ``openai`` client, the generation service's LLM mode and other tools can use talklike.
``model`` is the base model's name (or source) for the base, or an adapter's name.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from talklike.common import errors
from talklike.common.auth import AUTH_METADATA_KEY, token_matches
from talklike.common.error_mapping import STATUS_BY_ERROR, clip
from talklike.inference.core import InferenceCore, StreamEvent
from talklike.inference.settings import InferenceSettings
from talklike.inference.types import ChatTurn, Prompt, Sampling, StopReason

#: Each class of the one error table (``error_mapping.STATUS_BY_ERROR``) → (HTTP status, OpenAI
#: error type); looked up by isinstance in the table's order, as the gRPC side does, so a domain
#: error reads the same on both faces, subclasses included.
HTTP_ERRORS: dict[type[errors.TalklikeError], tuple[int, str]] = {
    errors.InvalidArgument: (400, "invalid_request_error"),
    errors.NotFound: (404, "not_found_error"),
    errors.AlreadyExists: (409, "conflict_error"),
    errors.PermissionDenied: (403, "permission_error"),
    errors.FailedPrecondition: (400, "invalid_request_error"),
    errors.ResourceExhausted: (429, "rate_limit_error"),
    errors.DeadlineExceeded: (504, "timeout_error"),
    errors.Unavailable: (503, "service_unavailable"),
    errors.Cancelled: (499, "cancelled"),
}


def http_error(exc: errors.TalklikeError) -> tuple[int, str]:
    """(HTTP status, OpenAI error type) of a domain error; 500 server_error for one the table does not name."""
    for error_class, _ in STATUS_BY_ERROR:
        if isinstance(exc, error_class):
            return HTTP_ERRORS[error_class]
    return 500, "server_error"


FINISH_REASONS = {
    StopReason.MAX_TOKENS: "length",
    StopReason.EOS: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.TIME_LIMIT: "length",
    StopReason.CANCELLED: "stop",
    StopReason.ERROR: "error",
}


#: Parameters of OpenAI's chat completions this face does not implement, each with the values that
#: ask for nothing beyond what it does (so a client that sends the default still works). Any other
#: value is a 400 naming the parameter: silently ignoring it would answer a different question.
UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n": (lambda v: v in (None, 1), "only one choice per request (n=1) is served"),
    "logprobs": (
        lambda v: v in (None, False),
        "log-probabilities are not returned here; use the gRPC Score RPC",
    ),
    "top_logprobs": (
        lambda v: v in (None, 0),
        "log-probabilities are not returned here; use the gRPC Score RPC",
    ),
    "response_format": (
        lambda v: v is None or v == {"type": "text"},
        "only plain text answers are served (no JSON mode or schema)",
    ),
    "tools": (lambda v: not v, "tool calling is not supported"),
    "tool_choice": (lambda v: v in (None, "none"), "tool calling is not supported"),
    "functions": (lambda v: not v, "function calling is not supported"),
    "function_call": (lambda v: v in (None, "none"), "function calling is not supported"),
    "logit_bias": (lambda v: not v, "not supported"),
    "modalities": (lambda v: v in (None, ["text"]), "only text is served"),
    "audio": (lambda v: v is None, "only text is served"),
}
#: What ``stream_options`` may hold.
STREAM_OPTIONS = ("include_usage",)


def refuse_unsupported(body: dict[str, Any]) -> None:
    """InvalidArgument naming the first parameter whose value asks for something not served."""
    for name, (harmless, reason) in UNSUPPORTED.items():
        if name in body and not harmless(body[name]):
            raise errors.InvalidArgument(name, reason)


def include_usage(body: dict[str, Any]) -> bool:
    """``stream_options.include_usage`` (only with ``stream: true``, as OpenAI has it)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not body.get("stream"):
        raise errors.InvalidArgument("stream_options", "is only allowed with stream: true")
    if not isinstance(options, dict):
        raise errors.InvalidArgument("stream_options", 'must be an object such as {"include_usage": true}')
    for key in options:
        if key not in STREAM_OPTIONS:
            raise errors.InvalidArgument(
                f"stream_options.{key}", f"not supported; known: {', '.join(STREAM_OPTIONS)}"
            )
    value = options.get("include_usage", False)
    if not isinstance(value, bool):
        raise errors.InvalidArgument("stream_options.include_usage", "must be true or false")
    return value


def usage_of(final: StreamEvent) -> dict[str, int]:
    """OpenAI's ``usage`` object of a finished generation."""
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.completion_tokens,
        "total_tokens": final.prompt_tokens + final.completion_tokens,
    }


class HttpFace:
    """An aiohttp server on ``settings.http_port`` (0 = off)."""

    def __init__(self, core: InferenceCore, settings: InferenceSettings) -> None:
        self.core = core
        self.settings = settings
        self.port = 0
        self._runner: Any = None

    def base_names(self) -> set[str]:
        return {self.settings.base_model, self.core.base_model().name}

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
                status, kind = http_error(exc)
                return error_response(status, kind, clip(exc.message), getattr(exc, "field", None))

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
                "id": self.core.base_model().name,
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
                "parent": self.core.base_model().name,
            }
            for name, a in sorted(self.core.adapters.items())
        ]
        return web.json_response({"object": "list", "data": data})

    def _parse(self, body: dict[str, Any]) -> tuple[Prompt, str, Sampling, str]:
        refuse_unsupported(body)
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
            presence_penalty=penalty(body, "presence_penalty"),
            frequency_penalty=penalty(body, "frequency_penalty"),
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
        with_usage = include_usage(body)
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
                    "usage": usage_of(final),
                }
            )
        stream = self.core.stream(prompt, adapter, sampling)
        first = await anext(stream)  # errors (bad input, overload) become an HTTP error, not a broken stream
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(chunk: dict[str, Any]) -> None:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                **chunk,
            }
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())

        def choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        try:
            await send(choice({"role": "assistant", "content": ""}, None))
            event = first
            while True:
                if event.text:
                    await send(choice({"content": event.text}, None))
                if event.stop is not None:
                    await send(choice({}, FINISH_REASONS[event.stop]))
                    if with_usage:  # OpenAI's last chunk: no choices, the usage of the whole answer
                        await send({"choices": [], "usage": usage_of(event)})
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


def penalty(body: dict[str, Any], field: str) -> float:
    """OpenAI's presence / frequency penalty: a number from -2 to 2 (null or absent: 0)."""
    value = number(body, field, 0.0)
    if not -2.0 <= value <= 2.0:
        raise errors.InvalidArgument(field, f"must be between -2 and 2, got {value}")
    return value


def error_response(status: int, kind: str, message: str, param: str | None = None) -> Any:
    from aiohttp import web

    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": None}}, status=status
    )
