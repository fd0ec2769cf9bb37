"""The one error table, through a real server: each domain error → its status, for every call shape."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import grpc
import pytest
from talklike.common import errors
from talklike.common.error_mapping import (
    FIELD_METADATA_KEY,
    REQUEST_ID_METADATA_KEY,
    STATUS_BY_ERROR,
    status_for,
)
from talklike.common.logs import configure_logging
from talklike.common.service import ServiceBinding
from talklike.common.testing import running_service
from talklike_sample_service import ERRORS, method

EXPECTED = {
    b"invalid": grpc.StatusCode.INVALID_ARGUMENT,
    b"not_found": grpc.StatusCode.NOT_FOUND,
    b"exists": grpc.StatusCode.ALREADY_EXISTS,
    b"denied": grpc.StatusCode.PERMISSION_DENIED,
    b"precondition": grpc.StatusCode.FAILED_PRECONDITION,
    b"exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    b"deadline": grpc.StatusCode.DEADLINE_EXCEEDED,
    b"unavailable": grpc.StatusCode.UNAVAILABLE,
    b"cancelled": grpc.StatusCode.CANCELLED,
    b"bug": grpc.StatusCode.INTERNAL,
}


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The runtime's JSON log lines, captured; the handler is removed afterwards."""
    stream = io.StringIO()
    handler = configure_logging(service="sample", stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def log_entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_every_domain_error_class_is_in_the_table() -> None:
    table = {error_class for error_class, _ in STATUS_BY_ERROR}
    domain = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.TalklikeError)
    }
    assert domain - {errors.TalklikeError} == table
    assert status_for(errors.TalklikeError("x")) == grpc.StatusCode.INTERNAL
    assert status_for(KeyError("x")) == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize("payload", sorted(EXPECTED))
async def test_unary_error_maps_to_status(sample_binding: ServiceBinding, payload: bytes) -> None:
    assert set(EXPECTED) == set(ERRORS)
    async with running_service(sample_binding) as srv:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await srv.channel().unary_unary(method("Raise"))(payload)
    error = caught.value
    assert error.code() == EXPECTED[payload]
    raised = ERRORS[payload]
    if isinstance(raised, errors.TalklikeError):
        assert error.details() == raised.message
    trailing = dict(error.trailing_metadata() or ())
    if payload == b"invalid":
        assert error.details() == "sampling.temperature: must be between 0 and 2"
        assert trailing[FIELD_METADATA_KEY] == "sampling.temperature"
    else:
        assert FIELD_METADATA_KEY not in trailing


async def test_unexpected_error_is_internal_with_a_logged_request_id(
    sample_binding: ServiceBinding, log_stream: io.StringIO
) -> None:
    async with running_service(sample_binding) as srv:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await srv.channel().unary_unary(method("Raise"))(b"bug")
    error = caught.value
    request_id = dict(error.trailing_metadata() or ())[REQUEST_ID_METADATA_KEY]
    assert f"request id {request_id}" in (error.details() or "")
    assert "division" not in (error.details() or ""), "internals must not leak to the client"
    logged = [e for e in log_entries(log_stream) if e.get("request_id") == request_id]
    assert logged, log_stream.getvalue()
    assert logged[0]["level"] == "ERROR"
    assert logged[0]["method"] == method("Raise")
    assert "ZeroDivisionError" in str(logged[0]["traceback"])


async def test_client_request_id_is_used(sample_binding: ServiceBinding, log_stream: io.StringIO) -> None:
    async with running_service(sample_binding) as srv:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await srv.channel().unary_unary(method("Raise"))(b"bug", metadata=(("x-request-id", "trace-42"),))
    assert "request id trace-42" in (caught.value.details() or "")
    assert any(e.get("request_id") == "trace-42" for e in log_entries(log_stream))


async def test_server_stream_error_after_items(sample_binding: ServiceBinding) -> None:
    async with running_service(sample_binding) as srv:
        call = srv.channel().unary_stream(method("Count"))(b"3!")
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for item in call:
                received.append(item)
    assert received == [b"0", b"1", b"2"]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(caught.value.trailing_metadata() or ())[FIELD_METADATA_KEY] == "count"


async def test_client_stream_unexpected_error_is_internal(sample_binding: ServiceBinding) -> None:
    async with running_service(sample_binding) as srv:
        collect = srv.channel().stream_unary(method("Collect"))
        assert await collect(iter([b"a", b"b"])) == b"a,b"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(iter([b"a", b"boom"]))
    assert caught.value.code() == grpc.StatusCode.INTERNAL


async def test_bidi_stream_error(sample_binding: ServiceBinding) -> None:
    async with running_service(sample_binding) as srv:
        chat = srv.channel().stream_stream(method("Chat"))
        assert [item async for item in chat(iter([b"a", b"b"]))] == [b"A", b"B"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in chat(iter([b"a", b"missing"])):
                pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "pack 'missing' not found"


async def test_client_cancellation_reaches_the_handler_and_is_not_an_error(
    sample_binding: ServiceBinding, log_stream: io.StringIO
) -> None:
    async with running_service(sample_binding) as srv:
        call = srv.channel().unary_unary(method("Sleep"))(b"30")
        while srv.server.gate.in_flight == 0:
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(200):
            if srv.server.gate.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert srv.server.gate.in_flight == 0, "the handler kept running after the client cancelled"
    assert not [e for e in log_entries(log_stream) if e["level"] == "ERROR"], log_stream.getvalue()
