"""A small typed client of the disk agent, for the services that ask it for room.

Failures come back as ``talklike.common.errors`` exceptions (``client.remote_errors``), so a
caller handles "not enough disk" (FailedPrecondition) without importing gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from talklike.common import client
from talklike.v1 import disk_agent_pb2 as pb
from talklike.v1 import disk_agent_pb2_grpc as pb_grpc

SERVICE = "disk-agent"


@dataclass(frozen=True)
class Room:
    """What EnsureFree did: bytes freed, the evicted entries' keys in order, bytes free afterwards."""

    freed_bytes: int
    evicted: tuple[str, ...]
    free_bytes: int
    held_back: tuple[str, ...]


def reachable(timeout_s: float = 0.5) -> bool:
    """True when the disk agent answers SERVING (the local stack may run without one)."""
    return client.health_status(SERVICE, timeout_s=timeout_s) == "SERVING"


def address() -> str:
    """Where the disk agent is looked for (for messages)."""
    return client.address_for(SERVICE)


class DiskAgentClient(client.ServiceClient):
    """Sync client of the disk-agent service."""

    service = SERVICE

    def __init__(self, channel: grpc.Channel | None = None) -> None:
        super().__init__(channel)
        self.stub = pb_grpc.DiskAgentServiceStub(self.channel)

    def ensure_free(self, required_bytes: int, volume: str = "", timeout_s: float = 120) -> Room:
        """Make ``required_bytes`` free on ``volume`` (default: the models cache), evicting LRU entries.

        FailedPrecondition when it cannot (everything left is pinned or in use).
        """
        with client.remote_errors():
            reply = self.stub.EnsureFree(
                pb.EnsureFreeRequest(volume=volume, required_bytes=required_bytes), timeout=timeout_s
            )
        return Room(
            int(reply.freed_bytes),
            tuple(e.key for e in reply.evicted),
            int(reply.free_bytes),
            tuple(reply.held_back),
        )
