"""Structured logs: one JSON object a line, with the request id and method where known.

Every service calls ``configure_logging(settings)`` once at start. The request id and the
gRPC method live in context variables that the error-mapping interceptor sets for each
call, so any log line written while serving a call (in the servicer, in the domain core)
carries them without the code passing them around — that is what lets an operator find
the traceback behind "internal error (request id ...)" in a user's message.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from talklike.common.settings import ServiceSettings

#: The id of the RPC being served in this task ("" outside a call).
request_id_var: ContextVar[str] = ContextVar("talklike_request_id", default="")
#: The full gRPC method being served in this task, e.g. ``/talklike.v1.GenerationService/Generate``.
method_var: ContextVar[str] = ContextVar("talklike_method", default="")

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})))
_STANDARD_ATTRS |= {"message", "asctime", "taskName"}

#: Marks the handler this module installed, so that configuring twice replaces it instead of doubling lines.
_HANDLER_FLAG = "_talklike_handler"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, service, logger, message and context."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON; ``extra=`` fields and the traceback (as ``traceback``) are included."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        method = method_var.get()
        if method:
            entry["method"] = method
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A human-readable line for a terminal, still with the request id when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s " + f"{service} " + "%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The plain line, with ``[request_id]`` appended inside a call."""
        line = super().format(record)
        request_id = request_id_var.get()
        return f"{line} [request {request_id}]" if request_id else line


def configure_logging(
    settings: ServiceSettings | None = None,
    *,
    service: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) as JSON lines or text, per settings.

    ``service`` defaults to the settings class's service name. Calling it again replaces the
    handler it installed before, so tests and re-configuration never duplicate lines. Returns
    the handler (tests read what it wrote).
    """
    name = service or (settings.service if settings is not None else "") or "talklike"
    log_format = settings.log_format if settings is not None else "json"
    level = settings.log_level if settings is not None else "INFO"
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(name) if log_format == "json" else TextFormatter(name))
    setattr(handler, _HANDLER_FLAG, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_FLAG, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # grpc's own logger is chatty at INFO about internals nobody acts on.
    logging.getLogger("grpc").setLevel(max(logging.WARNING, root.level))
    return handler
