"""A small typed client of the training service, for the pipeline and other Python tools.

Failures come back as ``talklike.common.errors`` exceptions (``client.remote_errors``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import grpc
from talklike.common import client
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc

BACKENDS = {"peft": pb.TRAINING_BACKEND_PEFT, "openai": pb.TRAINING_BACKEND_OPENAI}


@dataclass(frozen=True)
class Hyperparameters:
    """The contract's Hyperparameters a LoRA job is usually given; 0 means the service's default."""

    max_steps: int = 0
    learning_rate: float = 0.0
    batch_size: int = 0
    gradient_accumulation_steps: int = 0
    max_sequence_tokens: int = 0
    lora_r: int = 0
    lora_alpha: float = 0.0
    eval_interval_steps: int = 0
    early_stopping_patience: int = 0
    seed: int = 0


@dataclass(frozen=True)
class Job:
    """A job as GetJob/CreateJob report it; ``state`` is the enum's name (``JOB_STATE_SUCCEEDED``)."""

    id: str
    state: str
    step: int
    total_steps: int
    error_code: str
    error_message: str
    #: The adapter's folder relative to the data home (local backend, once succeeded).
    adapter_path: str

    @property
    def succeeded(self) -> bool:
        return self.state == "JOB_STATE_SUCCEEDED"


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream: a step (with its loss), a state change, a log line."""

    kind: str
    state: str
    message: str
    step: int
    total_steps: int
    train_loss: float


def _job(job: pb.Job) -> Job:
    return Job(
        job.id,
        pb.JobState.Name(job.state),
        int(job.step),
        int(job.total_steps),
        job.error_code,
        job.error_message,
        job.adapter_path,
    )


class TrainingClient(client.ServiceClient):
    """Sync client of the training service."""

    service = "training"

    def __init__(self, channel: grpc.Channel | None = None) -> None:
        super().__init__(channel)
        self.stub = pb_grpc.TrainingServiceStub(self.channel)

    def create_job(
        self,
        dataset_path: str,
        base_model: str,
        adapter_name: str,
        hyperparameters: Hyperparameters,
        validation_dataset_path: str = "",
        backend: str = "peft",
    ) -> Job:
        """CreateJob for ``adapter_name`` on ``base_model``, trained on ``dataset_path`` (relative to the data home)."""
        request = pb.CreateJobRequest(
            dataset_path=dataset_path,
            validation_dataset_path=validation_dataset_path,
            backend=BACKENDS[backend],
            base_model=base_model,
            adapter_name=adapter_name,
            hyperparameters=pb.Hyperparameters(**asdict(hyperparameters)),
        )
        with client.remote_errors():
            return _job(self.stub.CreateJob(request, timeout=60).job)

    def events(self, job_id: str) -> Iterator[JobEvent]:
        """The job's events from the first, until it finishes."""
        for event in client.each(self.stub.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job_id))):
            yield JobEvent(
                event.kind,
                pb.JobState.Name(event.state),
                event.message,
                int(event.step),
                int(event.total_steps),
                float(event.train_loss),
            )

    def get_job(self, job_id: str) -> Job:
        with client.remote_errors():
            return _job(self.stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30).job)
