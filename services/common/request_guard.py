"""Refuse malformed and oversized requests before a servicer sees them.

Two things gRPC itself gets wrong for us: a request that does not parse (a corrupt wire format,
invalid UTF-8 in a string field) fails inside the deserializer, which grpc.aio reports as
UNKNOWN ``Unexpected <class 'google.protobuf.message.DecodeError'>`` with a traceback in the log;
and a parsed request is handed over whatever its sizes. The guard swaps in a deserializer that
turns a parse failure into a marker, and runs ``limits.check_request`` on every parsed request,
so both end as INVALID_ARGUMENT with a plain sentence through the one error-mapping interceptor
(it must sit inside that interceptor). Health and reflection are left alone.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from talklike.common.errors import InvalidArgument
from talklike.common.handlers import is_infrastructure
from talklike.common.limits import check_request


@dataclass(frozen=True)
class MalformedRequest:
    """What the deserializer hands over instead of a request that did not parse."""

    type_name: str


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserializer``, but a parse failure becomes a ``MalformedRequest`` instead of an exception."""
    message_class = getattr(deserializer, "__self__", None)
    type_name = message_class.DESCRIPTOR.full_name if message_class is not None else "request"

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:
            return MalformedRequest(type_name)

    return parse


def check(request: Any) -> None:
    """InvalidArgument for a request that did not parse or breaks a field limit."""
    if isinstance(request, MalformedRequest):
        raise InvalidArgument(
            "request",
            f"is not a valid {request.type_name} message: the bytes are not protobuf of that type, "
            "or a string field holds invalid UTF-8",
        )
    if isinstance(request, Message):  # a handler without a deserializer gets raw bytes
        check_request(request)


def _guard_unary(behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        check(request)
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return guarded


def _guard_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        return _guard_unary(behavior)  # a handler that writes with context.write

    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        check(request)
        async for item in behavior(request, context):
            yield item

    return guarded


class RequestGuardInterceptor(grpc.aio.ServerInterceptor):
    """Parse failures and limit breaches become INVALID_ARGUMENT; install it inside error mapping."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or is_infrastructure(handler_call_details.method) or handler.request_streaming:
            return handler
        deserializer = tolerant(handler.request_deserializer) if handler.request_deserializer else None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(handler.unary_unary), deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _guard_stream(handler.unary_stream), deserializer, handler.response_serializer
            )
        return handler
