"""Asking the disk agent for room before writing large files, when one is reachable."""

from __future__ import annotations

import grpc
from talklike.common import client
from talklike.training.data import JobError


def ensure_free(required_bytes: int, what: str) -> str:
    """EnsureFree on the disk agent; JobError("insufficient_disk") when it cannot make room.

    Returns a line for the job's log. With no disk agent reachable nothing is asked: the
    local stack without the agent still trains (and says so).
    """
    from talklike.v1 import disk_agent_pb2, disk_agent_pb2_grpc

    if client.health_status("disk-agent", timeout_s=0.5) != "SERVING":
        return f"disk agent not reachable at {client.address_for('disk-agent')}: {what} proceeds without a space check"
    with client.connect("disk-agent") as channel:
        stub = disk_agent_pb2_grpc.DiskAgentServiceStub(channel)
        try:
            reply = stub.EnsureFree(
                disk_agent_pb2.EnsureFreeRequest(required_bytes=required_bytes), timeout=120
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise JobError(
                    "insufficient_disk",
                    f"not enough free disk for {what} ({required_bytes} bytes needed): {error.details()}; "
                    "unpin or delete models (`talklike disk status`) and retry",
                ) from error
            raise
    evicted = ", ".join(e.key for e in reply.evicted) or "nothing"
    return f"disk agent made room for {what}: {required_bytes} bytes free (evicted {evicted})"
