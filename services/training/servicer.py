"""talklike.v1.TrainingService: proto ↔ domain over ``JobManager``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import grpc
from talklike.common.errors import InvalidArgument
from talklike.common.limits import SMALL_REQUEST_BYTES
from talklike.common.service import ServiceBinding
from talklike.training.compute import Compute
from talklike.training.manager import JobManager
from talklike.training.settings import TrainingSettings
from talklike.training.spec import Hyperparameters, JobSpec, build_spec
from talklike.training.store import EventRecord, JobRecord
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc

STATES = {
    "validating_files": pb.JOB_STATE_VALIDATING_FILES,
    "queued": pb.JOB_STATE_QUEUED,
    "running": pb.JOB_STATE_RUNNING,
    "succeeded": pb.JOB_STATE_SUCCEEDED,
    "failed": pb.JOB_STATE_FAILED,
    "cancelled": pb.JOB_STATE_CANCELLED,
}
BACKENDS = {pb.TRAINING_BACKEND_PEFT: "peft", pb.TRAINING_BACKEND_OPENAI: "openai"}
BACKEND_PB = {v: k for k, v in BACKENDS.items()}
SCHEDULES = {
    pb.LEARNING_RATE_SCHEDULE_UNSPECIFIED: "linear",
    pb.LEARNING_RATE_SCHEDULE_LINEAR: "linear",
    pb.LEARNING_RATE_SCHEDULE_COSINE: "cosine",
    pb.LEARNING_RATE_SCHEDULE_CONSTANT: "constant",
}
SCHEDULE_PB = {v: k for k, v in SCHEDULES.items() if k != pb.LEARNING_RATE_SCHEDULE_UNSPECIFIED}
DEVICES = {pb.COMPUTE_DEVICE_AUTO: "auto", pb.COMPUTE_DEVICE_CPU: "cpu", pb.COMPUTE_DEVICE_CUDA: "cuda"}
PRECISIONS = {
    pb.COMPUTE_PRECISION_UNSPECIFIED: "auto",
    pb.COMPUTE_PRECISION_FP32: "fp32",
    pb.COMPUTE_PRECISION_BF16: "bf16",
    pb.COMPUTE_PRECISION_FP16: "fp16",
}
QUANTIZATIONS = {pb.COMPUTE_QUANTIZATION_UNSPECIFIED: "none", pb.COMPUTE_QUANTIZATION_NF4: "nf4"}


def compute_from(c: pb.ComputeOptions, default_device: str) -> Compute:
    """Proto compute options; an unset device is the service's setting."""
    return Compute(
        device=DEVICES.get(c.device, f"unknown ({c.device})") if c.device else default_device,
        precision=PRECISIONS.get(c.precision, f"unknown ({c.precision})"),
        quantization=QUANTIZATIONS.get(c.quantization, f"unknown ({c.quantization})"),
        gradient_checkpointing=c.gradient_checkpointing,
        gpu_count=c.gpu_count or 1,
    )


def compute_pb(c: Compute) -> pb.ComputeOptions:
    """A job's compute options as the proto."""
    return pb.ComputeOptions(
        device={v: k for k, v in DEVICES.items()}.get(c.device, pb.COMPUTE_DEVICE_UNSPECIFIED),
        precision={v: k for k, v in PRECISIONS.items()}[c.precision],
        quantization={v: k for k, v in QUANTIZATIONS.items()}[c.quantization],
        gradient_checkpointing=c.gradient_checkpointing,
        gpu_count=c.gpu_count,
    )


def hyperparameters_from(h: pb.Hyperparameters, backend: str = "peft") -> Hyperparameters:
    """Proto settings with the documented zero-value defaults (OpenAI's: 0 = "auto")."""
    if backend == "openai":
        return Hyperparameters.for_openai(
            epochs=h.epochs,
            batch_size=h.batch_size,
            learning_rate_multiplier=h.learning_rate_multiplier,
            seed=h.seed,
        )
    r = h.lora_r or 16
    return Hyperparameters(
        epochs=h.epochs or 1,
        max_steps=h.max_steps,
        learning_rate=h.learning_rate if h.learning_rate else 2e-4,
        batch_size=h.batch_size or 4,
        max_sequence_tokens=h.max_sequence_tokens or 256,
        lora_r=r,
        lora_alpha=h.lora_alpha or 2.0 * r,
        lora_dropout=h.lora_dropout,
        lora_target_modules=tuple(h.lora_target_modules),
        seed=h.seed,
        eval_interval_steps=h.eval_interval_steps or 10,
        gradient_accumulation_steps=h.gradient_accumulation_steps or 1,
        warmup_steps=h.warmup_steps,
        learning_rate_schedule=SCHEDULES.get(
            h.learning_rate_schedule, f"unknown ({h.learning_rate_schedule})"
        ),
        early_stopping_patience=h.early_stopping_patience,
    )


def given_fields(request: pb.CreateJobRequest) -> list[str]:
    """The request's set field paths that only some backends can use."""
    paths = [f"hyperparameters.{f.name}" for f, _ in request.hyperparameters.ListFields()]
    paths += [f"compute.{f.name}" for f, _ in request.compute.ListFields()]
    return paths + (["export_merged"] if request.export_merged else [])


def hyperparameters_pb(hyperparameters: Hyperparameters) -> pb.Hyperparameters:
    """A job's settings as the proto (the contract's fields of the dataclass, the schedule as its enum)."""
    hp = asdict(hyperparameters)
    known = {f.name for f in pb.Hyperparameters.DESCRIPTOR.fields}
    fields = {k: v for k, v in hp.items() if k in known}
    fields["learning_rate_schedule"] = SCHEDULE_PB.get(hp.get("learning_rate_schedule", "linear"), 0)
    return pb.Hyperparameters(**fields)


def job_pb(job: JobRecord) -> pb.Job:
    spec = JobSpec.from_dict(job.spec)
    return pb.Job(
        id=job.id,
        state=STATES[job.state],
        backend=BACKEND_PB[job.backend],
        dataset_path=spec.dataset_path,
        validation_dataset_path=spec.validation_dataset_path,
        base_model=spec.base_model,
        adapter_name=spec.adapter_name,
        hyperparameters=hyperparameters_pb(spec.hyperparameters),
        step=job.step,
        total_steps=job.total_steps,
        train_loss=job.train_loss,
        eval_loss=job.eval_loss,
        error_code=job.error_code,
        error_message=job.error_message,
        adapter_path=job.adapter_path,
        fine_tuned_model=job.fine_tuned_model,
        compute=compute_pb(spec.compute) if job.backend == "peft" else None,
        created_at_unix_ms=int(job.created_at * 1000),
        updated_at_unix_ms=int(job.updated_at * 1000),
    )


def event_pb(event: EventRecord) -> pb.StreamJobEventsResponse:
    d = event.data
    return pb.StreamJobEventsResponse(
        sequence=event.seq,
        created_at_unix_ms=int(event.created_at * 1000),
        kind=event.kind,
        state=STATES[event.state],
        message=event.message,
        step=int(d.get("step", 0)),
        total_steps=int(d.get("total_steps", 0)),
        train_loss=float(d.get("train_loss", 0.0)),
        eval_loss=float(d.get("eval_loss", 0.0)),
        eval_perplexity=float(d.get("eval_perplexity", 0.0)),
        tokens_per_second=float(d.get("tokens_per_second", 0.0)),
        eta_seconds=float(d.get("eta_seconds", 0.0)),
    )


class TrainingServicer(pb_grpc.TrainingServiceServicer):
    """Thin: translation only."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def CreateJob(self, request: pb.CreateJobRequest, context: Any) -> pb.CreateJobResponse:
        if request.backend not in BACKENDS:
            raise InvalidArgument("backend", "must be TRAINING_BACKEND_PEFT or TRAINING_BACKEND_OPENAI")
        backend = BACKENDS[request.backend]
        spec = build_spec(
            self.manager.home,
            backend=backend,
            dataset_path=request.dataset_path,
            validation_dataset_path=request.validation_dataset_path,
            base_model=request.base_model,
            adapter_name=request.adapter_name,
            hyperparameters=hyperparameters_from(request.hyperparameters, backend),
            export_merged=request.export_merged,
            model_roots=self.manager.model_roots,
            given_fields=given_fields(request),
            compute=compute_from(request.compute, self.manager.settings.device)
            if backend == "peft"
            else None,
        )
        return pb.CreateJobResponse(job=job_pb(self.manager.create(spec, spec.backend)))

    async def GetJob(self, request: pb.GetJobRequest, context: Any) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=job_pb(self.manager.get(request.job_id)))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Any) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[job_pb(j) for j in self.manager.recent(request.limit)])

    async def CancelJob(self, request: pb.CancelJobRequest, context: Any) -> pb.CancelJobResponse:
        return pb.CancelJobResponse(job=job_pb(await self.manager.cancel(request.job_id)))

    async def StreamJobEvents(
        self, request: pb.StreamJobEventsRequest, context: Any
    ) -> AsyncIterator[pb.StreamJobEventsResponse]:
        async for event in self.manager.events(request.job_id):
            yield event_pb(event)


def create_service(settings: TrainingSettings) -> ServiceBinding:
    """The training binding: the manager starts (and resumes jobs) before SERVING."""
    manager = JobManager(settings)

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(manager), server)

    return ServiceBinding(
        full_name=settings.full_name,
        register=register,
        on_start=[manager.start],
        on_stop=[manager.stop],
        max_request_bytes=SMALL_REQUEST_BYTES,
    )
