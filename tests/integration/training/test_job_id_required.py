"""An empty job_id is INVALID_ARGUMENT naming the field, on every RPC that takes one (issue 15, cause 10)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from talklike.common.error_mapping import FIELD_METADATA_KEY
from talklike.common.testing import running_service
from talklike.training.servicer import create_service
from talklike.training.settings import TrainingSettings
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc


async def test_empty_job_id_names_the_field(tmp_path: Path) -> None:
    settings = TrainingSettings(
        home=tmp_path, port=0, metrics_port=0, notify_inference=False, use_disk_agent=False
    )
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        calls = {
            "GetJob": lambda: stub.GetJob(pb.GetJobRequest(job_id="")),
            "CancelJob": lambda: stub.CancelJob(pb.CancelJobRequest(job_id=" ")),
            "StreamJobEvents": lambda: anext(aiter(stub.StreamJobEvents(pb.StreamJobEventsRequest()))),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call()
            trailing = dict(caught.value.trailing_metadata() or ())
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert trailing.get(FIELD_METADATA_KEY) == "job_id", name
