"""Asking the disk agent for room before writing large files, when one is reachable."""

from __future__ import annotations

from talklike.common.errors import FailedPrecondition
from talklike.training.data import JobError


def ensure_free(required_bytes: int, what: str) -> str:
    """EnsureFree on the disk agent; JobError("insufficient_disk") when it cannot make room.

    Returns a line for the job's log. With no disk agent reachable nothing is asked: the
    local stack without the agent still trains (and says so).
    """
    from talklike.disk_agent import client as disk_agent

    if not disk_agent.reachable():
        return f"disk agent not reachable at {disk_agent.address()}: {what} proceeds without a space check"
    try:
        with disk_agent.DiskAgentClient() as agent:
            room = agent.ensure_free(required_bytes)
    except FailedPrecondition as error:
        raise JobError(
            "insufficient_disk",
            f"not enough free disk for {what} ({required_bytes} bytes needed): {error.message}; "
            "unpin or delete models (`talklike disk status`) and retry",
        ) from error
    evicted = ", ".join(room.evicted) or "nothing"
    return f"disk agent made room for {what}: {required_bytes} bytes free (evicted {evicted})"
