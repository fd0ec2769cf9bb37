"""A huge error message still reaches the client as its status, cut short (issue 15, cause 3).

A 20 kB value echoed into a message made the status exceed the client's 16 kB metadata limit:
the client saw a transport error ("Stream removed") instead of INVALID_ARGUMENT, and the log got
the whole value. The runtime cuts every message (and its log line) to ``MAX_MESSAGE_CHARS``.
"""

from __future__ import annotations

import io
import json
import logging

import grpc
import pytest
from talklike.common import errors
from talklike.common.error_mapping import MAX_MESSAGE_CHARS
from talklike.common.logs import configure_logging
from talklike.common.service import ServiceBinding
from talklike.common.testing import running_service

HUGE = "y" * 20_000
FAILURES = {
    b"invalid": errors.InvalidArgument("name", f"{HUGE} is not a name"),
    b"precondition": errors.FailedPrecondition(f"cannot use {HUGE}"),
}


async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise FAILURES[request]


def binding() -> ServiceBinding:
    handler = grpc.method_handlers_generic_handler(
        "talklike.test.Huge", {"Fail": grpc.unary_unary_rpc_method_handler(fail)}
    )
    return ServiceBinding(
        full_name="talklike.test.Huge", register=lambda server: server.add_generic_rpc_handlers((handler,))
    )


async def test_huge_messages_are_cut_in_the_status_and_the_log() -> None:
    stream = io.StringIO()
    handler = configure_logging(service="huge", stream=stream)
    try:
        async with running_service(binding()) as srv:
            call = srv.channel().unary_unary("/talklike.test.Huge/Fail")
            codes = {}
            for request in FAILURES:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(request, timeout=10)
                codes[request] = caught.value.code()
                assert len(caught.value.details() or "") < MAX_MESSAGE_CHARS + 100
    finally:
        logging.getLogger().removeHandler(handler)
    assert codes == {
        b"invalid": grpc.StatusCode.INVALID_ARGUMENT,
        b"precondition": grpc.StatusCode.FAILED_PRECONDITION,
    }
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    assert lines and all(len(str(entry["message"])) < MAX_MESSAGE_CHARS + 200 for entry in lines)
