"""A small typed client of the moderation service, for the pipeline and other Python tools.

Failures come back as ``talklike.common.errors`` exceptions (``client.remote_errors``).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from talklike.common import client
from talklike.common.client import ProgressCallback
from talklike.v1 import moderation_pb2 as pb
from talklike.v1 import moderation_pb2_grpc as pb_grpc

ACTIONS = {"drop": pb.MODERATION_ACTION_DROP, "annotate": pb.MODERATION_ACTION_ANNOTATE}


@dataclass(frozen=True)
class ModeratedDataset:
    """What ModerateDataset wrote (paths as the service names them) and how many lines went where."""

    moderated_path: str
    report_markdown_path: str
    line_count: int
    kept: int
    removed: int
    quarantined: int


class ModerationClient(client.ServiceClient):
    """Sync client of the moderation service."""

    service = "moderation"

    def __init__(self, channel: grpc.Channel | None = None) -> None:
        super().__init__(channel)
        self.stub = pb_grpc.ModerationServiceStub(self.channel)

    def moderate_dataset(
        self,
        path: str,
        action: str = "drop",
        on_progress: ProgressCallback | None = None,
        timeout_s: float = 600,
    ) -> ModeratedDataset:
        """ModerateDataset of the JSONL at ``path`` (relative to the data home) under the default policy."""
        request = pb.ModerateDatasetRequest(path=path, policy=pb.ModerationPolicy(action=ACTIONS[action]))
        summary = client.final_summary(self.stub.ModerateDataset(request, timeout=timeout_s), on_progress)
        return ModeratedDataset(
            summary.moderated_path,
            summary.report_markdown_path,
            int(summary.line_count),
            int(summary.kept_count),
            int(summary.removed_count),
            int(summary.quarantined_count),
        )
