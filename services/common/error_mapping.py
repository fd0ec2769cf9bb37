"""The one table from domain exceptions to gRPC status codes, applied by one interceptor.

Servicers never map errors themselves: domain cores raise ``talklike.common.errors``
exceptions and this interceptor turns them into statuses, so every service answers the same
mistake with the same code. ``InvalidArgument`` also puts its field in the trailing metadata
``talklike-field`` so that a client can point at the field without parsing the message.
Anything unexpected becomes INTERNAL carrying a request id; the same id is logged with the
traceback, so a user's report leads straight to the log line — and a user mistake never
surfaces as a bare INTERNAL.

The interceptor also sets the request id and method for the structured logs of the call
(``talklike.common.logs``): a client may send its own id in ``x-request-id``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import grpc
from talklike.common import errors
from talklike.common.disk_space import is_no_space, no_space_error
from talklike.common.handlers import ScopeInterceptor
from talklike.common.logs import method_var, request_id_var

logger = logging.getLogger(__name__)

#: Trailing-metadata key carrying ``InvalidArgument.field``.
FIELD_METADATA_KEY = "talklike-field"
#: Trailing-metadata key carrying the request id of an INTERNAL error.
REQUEST_ID_METADATA_KEY = "talklike-request-id"
#: Metadata key a client may set to choose the request id (tracing across services).
CLIENT_REQUEST_ID_KEY = "x-request-id"

#: The table (DEVELOPING.md). Order matters only for subclasses; these classes are siblings.
STATUS_BY_ERROR: tuple[tuple[type[errors.TalklikeError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Cancelled, grpc.StatusCode.CANCELLED),
)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: Longest status message (and its log line): gRPC clients refuse trailing metadata over 16 kB, so a
#: longer message would reach them as a transport error instead of its status.
MAX_MESSAGE_CHARS = 2000


def clip(message: str) -> str:
    """``message`` cut to ``MAX_MESSAGE_CHARS``, saying how long it was.

    Values are quoted short where they are raised (``errors.quote``); this is the backstop.
    """
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... (message cut: {len(message):,} characters in all)"


def status_for(error: BaseException) -> grpc.StatusCode:
    """The status code for a domain exception; INTERNAL for anything not in the table."""
    for error_class, code in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return code
    return grpc.StatusCode.INTERNAL


def request_id_from(metadata: Any) -> str:
    """The client's ``x-request-id`` when it is a sane token, else a fresh random id."""
    for key, value in metadata or ():
        if key == CLIENT_REQUEST_ID_KEY and isinstance(value, str) and _REQUEST_ID_RE.match(value):
            return value
    return uuid.uuid4().hex[:16]


@asynccontextmanager
async def error_scope(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    """Map what the call raises through the table; set the log context for the call's duration."""
    request_id = request_id_from(context.invocation_metadata())
    id_token = request_id_var.set(request_id)
    method_token = method_var.set(method)
    try:
        yield
    except grpc.aio.AbortError:
        # The handler (or an inner interceptor) already chose the status.
        raise
    except errors.TalklikeError as error:
        code = status_for(error)
        trailing: tuple[tuple[str, str], ...] = ()
        if isinstance(error, errors.InvalidArgument):
            trailing = ((FIELD_METADATA_KEY, error.field[:200]),)
        message = clip(error.message)
        log = logger.warning if code == grpc.StatusCode.INTERNAL else logger.info
        log("%s: %s", code.name, message, extra={"code": code.name})
        await context.abort(code, message, trailing_metadata=trailing)
    except Exception as error:
        # CancelledError is a BaseException and is not caught here: cancellation must propagate.
        if isinstance(error, OSError) and is_no_space(error):  # the caller's to fix, the volume named
            full = no_space_error(error)
            logger.warning("RESOURCE_EXHAUSTED: %s", full.message, extra={"code": "RESOURCE_EXHAUSTED"})
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, full.message)
        logger.exception("unexpected error", extra={"code": "INTERNAL"})
        await context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error (request id {request_id}); the service log has the details under that id",
            trailing_metadata=((REQUEST_ID_METADATA_KEY, request_id),),
        )
    finally:
        # A streaming handler's generator may be finalized in another context; the values then
        # die with that context anyway.
        with suppress(ValueError):
            method_var.reset(method_token)
            request_id_var.reset(id_token)


class ErrorMappingInterceptor(ScopeInterceptor):
    """The one error-mapping interceptor: every call of every service runs inside ``error_scope``."""

    def __init__(self) -> None:
        super().__init__(error_scope)
