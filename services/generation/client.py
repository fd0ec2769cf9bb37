"""A small typed client of the generation service, for the pipeline and other Python tools.

Failures come back as ``talklike.common.errors`` exceptions (``client.remote_errors``).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from talklike.common import client
from talklike.common.client import ProgressCallback
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Dataset:
    """A generated dataset: its folder (as the service names it: relative to the data home or absolute)."""

    out_dir: str
    count: int
    train_count: int
    val_count: int
    heldout_count: int


class GenerationClient(client.ServiceClient):
    """Sync client of the generation service."""

    service = "generation"

    def __init__(self, channel: grpc.Channel | None = None) -> None:
        super().__init__(channel)
        self.stub = pb_grpc.GenerationServiceStub(self.channel)

    def generate_dataset(
        self,
        pack: str,
        count: int,
        seed: int,
        out: str,
        on_progress: ProgressCallback | None = None,
        timeout_s: float = 600,
    ) -> Dataset:
        """GenerateDataset from ``pack`` into ``out`` (under ``<home>/datasets``), progress on the way."""
        request = pb.GenerateDatasetRequest(pack=pack, count=count, seed=seed, out=out)
        summary = client.final_summary(self.stub.GenerateDataset(request, timeout=timeout_s), on_progress)
        return Dataset(
            summary.out_dir,
            int(summary.count),
            int(summary.train_count),
            int(summary.val_count),
            int(summary.heldout_count),
        )
