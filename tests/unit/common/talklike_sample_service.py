"""A small service for testing the runtime without a proto: generic handlers over raw bytes.

``talklike.test.Sample`` has one method per call shape plus methods that raise chosen domain
errors or sleep, so the runtime's interceptors, drain and auth can be tested for real. Run as
a script it serves the sample service with ``serve()`` and ``SampleSettings`` from the
environment (``TALKLIKE_SAMPLE_PORT``, default 0: a free port); its JSON log line "serving ..."
carries the bound port. The first argument, when given, is the drain grace in seconds.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import ClassVar

import grpc
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from talklike.common import errors
from talklike.common.service import ServiceBinding
from talklike.common.settings import ServiceSettings

FULL_NAME = "talklike.test.Sample"

#: Request payload of ``Raise`` → the exception it raises.
ERRORS: dict[bytes, BaseException] = {
    b"invalid": errors.InvalidArgument("sampling.temperature", "must be between 0 and 2"),
    b"not_found": errors.NotFound("adapter", "ghost"),
    b"exists": errors.AlreadyExists("dataset 'x' exists"),
    b"denied": errors.PermissionDenied("outside the data home"),
    b"precondition": errors.FailedPrecondition("job is not running"),
    b"exhausted": errors.ResourceExhausted("queue is full"),
    b"deadline": errors.DeadlineExceeded("took too long"),
    b"unavailable": errors.Unavailable("upstream is down"),
    b"cancelled": errors.Cancelled("cancelled by the caller"),
    b"bug": ZeroDivisionError("division by zero"),
}


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Return the request."""
    return request


async def raise_error(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Raise the error named by the request."""
    raise ERRORS[request]


async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Sleep for the request's number of seconds, then answer ``done``."""
    await asyncio.sleep(float(request.decode()))
    return b"done"


async def count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    """Stream ``0..n-1``; a request ``n!`` raises InvalidArgument after the n items."""
    text = request.decode()
    for index in range(int(text.rstrip("!"))):
        yield str(index).encode()
    if text.endswith("!"):
        raise errors.InvalidArgument("count", "stream broke on purpose")


async def collect(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    """Join a client stream; a ``boom`` item raises an unexpected error."""
    parts = []
    async for item in requests:
        if item == b"boom":
            raise RuntimeError("boom")
        parts.append(item)
    return b",".join(parts)


async def chat(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    """Echo each item of a client stream, upper-cased; ``missing`` raises NotFound."""
    async for item in requests:
        if item == b"missing":
            raise errors.NotFound("pack", "missing")
        yield item.upper()


def create_sample_service(on_start_delay_s: float = 0.0) -> ServiceBinding:
    """The sample binding; ``on_start_delay_s`` makes readiness wait (tests readiness ordering)."""
    handler = grpc.method_handlers_generic_handler(
        FULL_NAME,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Raise": grpc.unary_unary_rpc_method_handler(raise_error),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
            "Count": grpc.unary_stream_rpc_method_handler(count),
            "Collect": grpc.stream_unary_rpc_method_handler(collect),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )

    async def warm_up() -> None:
        await asyncio.sleep(on_start_delay_s)

    return ServiceBinding(
        full_name=FULL_NAME,
        register=lambda server: server.add_generic_rpc_handlers((handler,)),
        on_start=[warm_up],
    )


def method(name: str) -> str:
    """The full method path of a sample method."""
    return f"/{FULL_NAME}/{name}"


class SampleSettings(ServiceSettings):
    """Settings of the sample service, shaped like a real service's (prefix ``TALKLIKE_SAMPLE_``)."""

    model_config = SettingsConfigDict(env_prefix="TALKLIKE_SAMPLE_", populate_by_name=True, extra="ignore")
    service: ClassVar[str] = "sample"
    full_name: ClassVar[str] = FULL_NAME
    greeting: str = Field(default="hello", description="What the sample says.")
    tags: list[str] = Field(default_factory=list, description="A list-valued setting.")
    verbose: bool = Field(default=False, description="A boolean setting.")


def create_service(settings: SampleSettings) -> ServiceBinding:
    """The factory a registry entry names (``create_service(settings) -> ServiceBinding``)."""
    return create_sample_service()


async def _main() -> None:
    from talklike.common.server import serve

    settings = SampleSettings()
    if len(sys.argv) > 1:
        settings.drain_grace_s = float(sys.argv[1])
    await serve(settings, create_sample_service())


if __name__ == "__main__":
    asyncio.run(_main())
