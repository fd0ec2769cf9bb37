"""The HTTP face maps domain errors through the same table as gRPC: by isinstance, every class in it."""

from __future__ import annotations

import pytest
from talklike.common import errors
from talklike.common.error_mapping import STATUS_BY_ERROR
from talklike.inference.http_face import HTTP_ERRORS, http_error


class DraftStopped(errors.FailedPrecondition):
    """A subclass, as services raise them (DraftFailed, PackInvalid)."""


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.InvalidArgument("model", "is required"), (400, "invalid_request_error")),
        (errors.NotFound("adapter", "x"), (404, "not_found_error")),
        (errors.AlreadyExists("taken"), (409, "conflict_error")),
        (errors.PermissionDenied("outside"), (403, "permission_error")),
        (errors.FailedPrecondition("not loaded"), (400, "invalid_request_error")),
        (DraftStopped("a subclass maps as its base"), (400, "invalid_request_error")),
        (errors.ResourceExhausted("queue full"), (429, "rate_limit_error")),
        (errors.DeadlineExceeded("too slow"), (504, "timeout_error")),
        (errors.Unavailable("down"), (503, "service_unavailable")),
        (errors.Cancelled("gone"), (499, "cancelled")),
        (errors.TalklikeError("not in the table"), (500, "server_error")),
    ],
)
def test_each_domain_error_has_its_http_status(
    error: errors.TalklikeError, expected: tuple[int, str]
) -> None:
    assert http_error(error) == expected


def test_every_class_of_the_error_table_has_an_http_status() -> None:
    assert {error_class for error_class, _ in STATUS_BY_ERROR} == set(HTTP_ERRORS)
