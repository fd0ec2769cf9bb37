"""CreateJob refuses the values the probe slipped through (issue 15, cause 4).

``adapter_name`` "." and ".." (the worker then renamed the data home itself), and a ``base_model``
naming any directory on the machine. A base model must be a known source, a model under
``<home>/models``, or under a root the operator allowed (``model_roots``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import grpc
import pytest
from talklike.common.error_mapping import FIELD_METADATA_KEY
from talklike.common.testing import running_service
from talklike.training.servicer import create_service
from talklike.training.settings import TrainingSettings
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc


def request(**fields: str) -> pb.CreateJobRequest:
    values = {"dataset_path": "datasets/persona/train.jsonl", "base_model": "tiny", **fields}
    return pb.CreateJobRequest(backend=pb.TRAINING_BACKEND_PEFT, **values)  # type: ignore[arg-type]


async def test_bad_adapter_names_and_base_models_are_refused(persona_home: Path) -> None:
    home = persona_home
    outside = home / "elsewhere" / "model"
    outside.mkdir(parents=True)
    (home / "models" / "mine").mkdir(parents=True)
    settings = TrainingSettings(
        home=home,
        port=0,
        metrics_port=0,
        notify_inference=False,
        use_disk_agent=False,
        model_roots=str(home / "elsewhere"),
    )
    refused = {
        "adapter_name": [request(adapter_name="."), request(adapter_name="..")],
        "base_model": [
            request(base_model="/etc"),
            request(base_model="../../../../etc"),
            request(base_model=str(home)),  # a parent of the allowed root is not inside it
            request(base_model="no-such-model"),
        ],
    }
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        for field, requests in refused.items():
            for bad in requests:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.CreateJob(bad)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
                assert dict(caught.value.trailing_metadata() or ()).get(FIELD_METADATA_KEY) == field
        inside = (await stub.CreateJob(request(base_model="mine", adapter_name="a"))).job
        allowed_root = (await stub.CreateJob(request(base_model=str(outside), adapter_name="b"))).job
        for job in (inside, allowed_root):  # no config.json in them: they would fail; stop them now
            with contextlib.suppress(grpc.aio.AioRpcError):  # unless one has failed already
                await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
    assert inside.base_model == str((home / "models" / "mine").resolve())
    assert allowed_root.base_model == str(outside.resolve())
