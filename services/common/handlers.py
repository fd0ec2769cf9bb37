"""Run code around every RPC, for all four call shapes, in one way.

grpc.aio interceptors get a method handler and must return one; wrapping it correctly for
unary and streaming responses (async generators, or coroutines that ``context.write``) is
fiddly and easy to get subtly wrong, so the runtime's interceptors (auth, metrics, error
mapping, drain) each supply only an async context manager — a *call scope* — and
``ScopeInterceptor`` applies it to the whole call, including every streamed message.

Exceptions raised by the handler flow through the scope (a scope may translate them, e.g.
into ``context.abort``); ``asyncio.CancelledError`` is a BaseException and scopes must let
it pass so that a client's cancellation reaches the handler's awaits.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

#: ``scope(method, context)`` returns the async context manager that wraps one call.
CallScope = Callable[[str, grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[Any]]

_Context = grpc.aio.ServicerContext[Any, Any]

#: Services that stay open and uncounted for drain and auth: probes and tooling must always work.
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def is_infrastructure(method: str) -> bool:
    """True for health and reflection methods, which auth and drain leave alone."""
    return method.startswith(HEALTH_PREFIX) or method.startswith(REFLECTION_PREFIXES)


def _wrap_unary_response(behavior: Callable[..., Any], method: str, scope: CallScope) -> Callable[..., Any]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with scope(method, context):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result

    return wrapped


def _wrap_stream_response(behavior: Callable[..., Any], method: str, scope: CallScope) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def wrapped_gen(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with scope(method, context):
                async for item in behavior(request, context):
                    yield item

        return wrapped_gen

    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # A handler that writes with ``context.write`` and returns None (grpc-health's Watch does).
        async with scope(method, context):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            elif result is not None and hasattr(result, "__aiter__"):
                async for item in result:
                    await context.write(item)
            elif result is not None:
                for item in result:
                    await context.write(item)
            return None

    return wrapped


def wrap_handler(handler: grpc.RpcMethodHandler, method: str, scope: CallScope) -> grpc.RpcMethodHandler:
    """A handler of the same shape whose behavior runs inside ``scope(method, context)``."""
    deserializer = handler.request_deserializer
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(handler.unary_unary, method, scope), deserializer, serializer
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(handler.stream_unary, method, scope), deserializer, serializer
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(handler.unary_stream, method, scope), deserializer, serializer
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_response(handler.stream_stream, method, scope), deserializer, serializer
        )
    return handler


class ScopeInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that runs every call (or every call ``applies_to``) inside ``scope``."""

    def __init__(self, scope: CallScope, applies_to: Callable[[str], bool] | None = None) -> None:
        self._scope = scope
        self._applies_to = applies_to

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the next handler; unknown methods (None) pass through so gRPC answers UNIMPLEMENTED."""
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or (self._applies_to is not None and not self._applies_to(method)):
            return handler
        return wrap_handler(handler, method, self._scope)
