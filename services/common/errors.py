"""Domain errors.

Domain cores raise these and never import grpc; the server runtime maps each class to a
status code in one table (``talklike.common.error_mapping``). The message is written for a
person: it names the field or the thing, and says what to do.
"""

from __future__ import annotations

#: Most characters of a caller's value that an error message or a log line quotes: a 10 MB name
#: echoed back would exceed the client's metadata limit (a transport error instead of the status)
#: and make a 10 MB log line.
QUOTE_CHARS = 100


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of a caller's value, cut to ``limit`` characters with the full length said."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


class TalklikeError(Exception):
    """Base of every error a user can cause or fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TalklikeError):
    """A request field is wrong; ``field`` is its path in the request, e.g. ``sampling.temperature``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(TalklikeError):
    """An id or name that does not exist: ``kind`` says what was looked up (pack, job, adapter...)."""

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        message = f"{kind} {quote(name)} not found"
        super().__init__(f"{message}; {hint}" if hint else message)
        self.kind = kind
        self.name = name


class AlreadyExists(TalklikeError):
    """Something with that name exists and the request would overwrite it."""


class PermissionDenied(TalklikeError):
    """A path or resource outside what this service may touch."""


class FailedPrecondition(TalklikeError):
    """The system is not in a state that allows this (wrong job state, no disk, missing API key...)."""


class ResourceExhausted(TalklikeError):
    """Overload: the queue is full or a limit is reached; retrying later can succeed."""


class DeadlineExceeded(TalklikeError):
    """The work did not finish (or start) within its time limit."""


class Unavailable(TalklikeError):
    """A dependency (another service, an external API) cannot be reached right now."""


class Cancelled(TalklikeError):
    """The work was cancelled by the caller."""
