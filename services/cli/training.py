"""``talklike train`` and ``talklike jobs list|show|cancel|follow``: the training service, through gRPC."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from talklike.cli.output import console, err_console, fail, progress, rpc_errors, table
from talklike.common.client import connect
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc

SERVICE = "training"
jobs_app = typer.Typer(help="Fine-tuning jobs: list, show, cancel, follow.", no_args_is_help=True)
BACKENDS = {"peft": pb.TRAINING_BACKEND_PEFT, "openai": pb.TRAINING_BACKEND_OPENAI}
DEVICES = {
    "": pb.COMPUTE_DEVICE_UNSPECIFIED,
    "auto": pb.COMPUTE_DEVICE_AUTO,
    "cpu": pb.COMPUTE_DEVICE_CPU,
    "cuda": pb.COMPUTE_DEVICE_CUDA,
}
PRECISIONS = {
    "auto": pb.COMPUTE_PRECISION_UNSPECIFIED,
    "fp32": pb.COMPUTE_PRECISION_FP32,
    "bf16": pb.COMPUTE_PRECISION_BF16,
    "fp16": pb.COMPUTE_PRECISION_FP16,
}
QUANTIZATIONS = {"none": pb.COMPUTE_QUANTIZATION_UNSPECIFIED, "4bit": pb.COMPUTE_QUANTIZATION_NF4}


def stub() -> pb_grpc.TrainingServiceStub:
    return pb_grpc.TrainingServiceStub(connect(SERVICE))


def state_name(state: int) -> str:
    return pb.JobState.Name(state).removeprefix("JOB_STATE_").lower()  # type: ignore[arg-type]


def follow_job(job_id: str) -> pb.Job:
    """Draw a live progress bar with the loss until the job finishes; returns the final job."""
    with rpc_errors(SERVICE), progress() as bar:
        task = bar.add_task(f"{job_id}: validating", total=None)
        for event in stub().StreamJobEvents(pb.StreamJobEventsRequest(job_id=job_id)):
            if event.total_steps:
                bar.update(task, total=event.total_steps, completed=event.step)
            if event.kind == "step":
                bar.update(task, description=f"{job_id}: loss {event.train_loss:.3f}")
            elif event.kind == "eval":
                err_console.print(
                    f"  eval loss {event.eval_loss:.4f} (perplexity {event.eval_perplexity:.2f}) at step {event.step}"
                )
            elif event.kind in ("state", "error", "log", "checkpoint"):
                bar.update(task, description=f"{job_id}: {state_name(event.state)}")
                err_console.print(f"  {event.message}", highlight=False, markup=False)
        job = stub().GetJob(pb.GetJobRequest(job_id=job_id)).job
    return job


def report(job: pb.Job) -> None:
    state = state_name(job.state)
    if state == "succeeded":
        where = job.adapter_path or job.fine_tuned_model
        console.print(
            f"[green]succeeded[/]: {where} (train loss {job.train_loss:.4f}, eval loss {job.eval_loss:.4f})"
        )
    elif state == "failed":
        fail(
            f"job {job.id} failed ({job.error_code}): {job.error_message}",
            "fix the cause above and create the job again",
        )
    else:
        console.print(f"job {job.id} is {state}")


def train(
    dataset: Annotated[
        str, typer.Argument(help="Training chat JSONL inside the data home, e.g. datasets/babis/train.jsonl.")
    ],
    backend: Annotated[str, typer.Option(help="peft (local LoRA) or openai.")] = "peft",
    base_model: Annotated[
        str,
        typer.Option(
            help="gemma3-270m (multilingual), smollm2 (English), tiny (tests), a local model directory, "
            "a .gguf or a cached hub id. The job warns when the model is known not to speak the dataset's language."
        ),
    ] = "gemma3-270m",
    adapter: Annotated[str, typer.Option(help="Adapter name to write under adapters/.")] = "",
    max_steps: Annotated[int, typer.Option(help="PEFT: stop after this many steps (0 = use epochs).")] = 0,
    epochs: Annotated[
        int,
        typer.Option(help="Passes over the data; 0 = 1 (PEFT) or auto (OpenAI's rule for the file's size)."),
    ] = 0,
    learning_rate: Annotated[float, typer.Option(help="PEFT: peak learning rate; 0 = 2e-4.")] = 0.0,
    learning_rate_multiplier: Annotated[
        float, typer.Option(help="OpenAI: factor on OpenAI's learning rate, up to 10; 0 = auto.")
    ] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Examples per step; 0 = 4 (PEFT) or auto (OpenAI).")] = 0,
    max_tokens: Annotated[int, typer.Option(help="PEFT: longest example in tokens; 0 = 256.")] = 0,
    lora_r: Annotated[int, typer.Option(help="PEFT: LoRA rank; 0 = 16.")] = 0,
    lora_alpha: Annotated[float, typer.Option(help="PEFT: LoRA alpha; 0 = 2 × r.")] = 0.0,
    target: Annotated[
        list[str] | None, typer.Option(help="PEFT: module to adapt (repeatable; default all linear).")
    ] = None,
    eval_every: Annotated[int, typer.Option(help="PEFT: evaluate every N steps; 0 = 10.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed (0 = 0 for PEFT, OpenAI's choice for OpenAI).")] = 0,
    gradient_accumulation_steps: Annotated[
        int,
        typer.Option(
            help="PEFT: micro-batches of --batch-size summed into one step (the memory of one); 0 = 1."
        ),
    ] = 0,
    device: Annotated[
        str,
        typer.Option(
            help="PEFT: auto (CUDA when the worker sees a GPU, else the CPU), cpu or cuda; "
            "empty = the service's TALKLIKE_TRAINING_DEVICE."
        ),
    ] = "",
    precision: Annotated[
        str,
        typer.Option(
            help="PEFT: auto (on CUDA bf16 where the GPU supports it, else fp16 with a gradient scaler; "
            "on the CPU bf16 where it has AMX or AVX512-BF16, else fp32), bf16, fp16 (CUDA) or fp32."
        ),
    ] = "auto",
    quantize: Annotated[
        str,
        typer.Option(
            help="PEFT on CUDA: none, or 4bit (QLoRA: the base in bitsandbytes NF4 with double "
            "quantization; needs the bitsandbytes package where the worker runs)."
        ),
    ] = "none",
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            help="PEFT: recompute activations in the backward pass (less memory, ~1/3 more compute)."
        ),
    ] = False,
    gpus: Annotated[
        int,
        typer.Option(help="PEFT on CUDA: data-parallel GPUs on one node (torchrun), up to 16; 0 = 1."),
    ] = 0,
    merged: Annotated[bool, typer.Option(help="PEFT: also export the merged model (for vLLM).")] = False,
    follow: Annotated[bool, typer.Option(help="Follow the job until it finishes.")] = True,
) -> None:
    """Create a fine-tuning job and follow it.

    Options left at 0 take the service's defaults. Each option names the backend that uses it;
    the service refuses an option the chosen backend cannot use instead of dropping it.

    Where a PEFT job runs is the training service's launcher (TALKLIKE_TRAINING_LAUNCHER): local
    runs the worker beside the service, on that machine's CPU or GPUs; kubernetes runs it as a
    Kubernetes Job on a GPU node (the gpu overlay). Before the model loads on a GPU, the worker
    estimates the memory the job needs (weights at the precision, LoRA and optimizer state,
    activations at --batch-size x --max-tokens) and, when it would not fit in the GPU's free
    memory, fails the job with the numbers and the setting that would fit (e.g.
    --gradient-checkpointing, a smaller --batch-size with more --gradient-accumulation-steps, or
    --quantize 4bit).
    """
    if backend not in BACKENDS:
        fail(f"unknown backend {backend!r}", "use --backend peft or --backend openai")
    choices = (
        (device, DEVICES, "--device"),
        (precision, PRECISIONS, "--precision"),
        (quantize, QUANTIZATIONS, "--quantize"),
    )
    for value, known, option in choices:
        if value not in known:
            fail(f"unknown {option} {value!r}", f"use one of {', '.join(v for v in known if v)}")
    request = pb.CreateJobRequest(
        dataset_path=dataset,
        backend=BACKENDS[backend],
        base_model=base_model,
        adapter_name=adapter,
        export_merged=merged,
        hyperparameters=pb.Hyperparameters(
            epochs=epochs,
            max_steps=max_steps,
            learning_rate=learning_rate,
            learning_rate_multiplier=learning_rate_multiplier,
            batch_size=batch_size,
            max_sequence_tokens=max_tokens,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_target_modules=target or [],
            eval_interval_steps=eval_every,
            seed=seed,
            gradient_accumulation_steps=gradient_accumulation_steps,
        ),
        compute=pb.ComputeOptions(
            device=DEVICES[device],
            precision=PRECISIONS[precision],
            quantization=QUANTIZATIONS[quantize],
            gradient_checkpointing=gradient_checkpointing,
            gpu_count=gpus,
        ),
    )
    with rpc_errors(SERVICE):
        job = stub().CreateJob(request).job
    console.print(f"created {job.id} (adapter {job.adapter_name})")
    if follow:
        report(follow_job(job.id))


@jobs_app.command("list")
def list_jobs(limit: Annotated[int, typer.Option(help="Most jobs to show.")] = 20) -> None:
    """Jobs, newest first."""
    with rpc_errors(SERVICE):
        jobs = stub().ListJobs(pb.ListJobsRequest(limit=limit)).jobs
    rows = [
        (
            j.id,
            state_name(j.state),
            j.base_model,
            j.adapter_name,
            f"{j.step}/{j.total_steps}",
            f"{j.eval_loss:.4f}" if j.eval_loss else "",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created_at_unix_ms / 1000)),
        )
        for j in jobs
    ]
    console.print(
        table(["job", "state", "base", "adapter", "steps", "eval loss", "created"], rows, markup=False)
    )


def _compute(c: pb.ComputeOptions) -> str:
    """A job's compute options in a line, e.g. "cuda, bf16, 4bit, gradient checkpointing, 2 GPUs"."""
    parts = [
        {v: k for k, v in DEVICES.items()}.get(c.device) or "service default",
        {v: k for k, v in PRECISIONS.items()}[c.precision],
        {v: k for k, v in QUANTIZATIONS.items()}[c.quantization],
    ]
    if c.gradient_checkpointing:
        parts.append("gradient checkpointing")
    parts.append("CPU" if c.device == pb.COMPUTE_DEVICE_CPU else f"{c.gpu_count or 1} GPU(s)")
    return ", ".join(parts)


@jobs_app.command("show")
def show(job_id: str) -> None:
    """One job in detail."""
    with rpc_errors(SERVICE):
        job = stub().GetJob(pb.GetJobRequest(job_id=job_id)).job
    rows = [
        ("state", state_name(job.state)),
        ("backend", pb.TrainingBackend.Name(job.backend)),
        ("dataset", job.dataset_path),
        ("validation", job.validation_dataset_path),
        ("base model", job.base_model),
        ("adapter", job.adapter_name),
        ("steps", f"{job.step}/{job.total_steps}"),
        ("train loss", f"{job.train_loss:.4f}"),
        ("eval loss", f"{job.eval_loss:.4f}"),
        ("adapter path", job.adapter_path),
        ("compute", _compute(job.compute) if job.HasField("compute") else ""),
        ("error", f"{job.error_code} {job.error_message}".strip()),
    ]
    console.print(table(["field", "value"], rows, title=job.id, markup=False))


@jobs_app.command("cancel")
def cancel(job_id: str) -> None:
    """Cancel a queued or running job."""
    with rpc_errors(SERVICE):
        job = stub().CancelJob(pb.CancelJobRequest(job_id=job_id)).job
    console.print(
        f"{job.id}: {state_name(job.state)}"
        + (" (stopping at the next step)" if state_name(job.state) == "running" else "")
    )


@jobs_app.command("follow")
def follow_command(job_id: str) -> None:
    """Follow a job's events with a live progress bar until it finishes."""
    report(follow_job(job_id))


def register(app: typer.Typer) -> None:
    """Add ``train`` and the ``jobs`` group."""
    app.command("train")(train)
    app.add_typer(jobs_app, name="jobs")
