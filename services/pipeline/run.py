"""``talklike pipeline run``: every stage through its service, resumable, one progress display."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from talklike.common.client import connect
from talklike.pipeline.config import PipelineConfig
from talklike.pipeline.stages import StageFailed, StageRunner
from talklike.v1 import training_pb2, training_pb2_grpc

Progress = Callable[[str, int, int, str], None]  # stage, done, total, detail


def follow(stage: str, stream: Iterable[Any], progress: Progress) -> Any:
    """Show a dataset stream's progress events; return its final summary."""
    summary = None
    for message in stream:
        if message.HasField("progress"):
            p = message.progress
            progress(stage, int(p.done), int(p.total), p.stage)
        else:
            summary = message.summary
    if summary is None:
        raise StageFailed(stage, "the service closed the stream without a summary")
    return summary


def generate_stage(config: PipelineConfig, home: Path, out: Path, progress: Progress) -> dict[str, Any]:
    """The persona dataset, through GenerationService.GenerateDataset."""
    from talklike.v1 import generation_pb2, generation_pb2_grpc

    stub = generation_pb2_grpc.GenerationServiceStub(connect("generation"))
    request = generation_pb2.GenerateDatasetRequest(
        pack=config.pack, count=config.count, seed=config.seed, out=f"pipeline-{out.name}"
    )
    summary = follow("generate", stub.GenerateDataset(request, timeout=600), progress)
    directory = Path(summary.out_dir)
    directory = directory if directory.is_absolute() else home / directory
    return {
        "dataset_path": str(directory),
        "train_path": str(directory / "train.jsonl"),
        "heldout_path": str(directory / "heldout.jsonl"),
        "count": int(summary.count),
    }


def moderate_stage(home: Path, train_path: Path, progress: Progress) -> dict[str, Any]:
    """The training split through ModerationService.ModerateDataset (drop what violates the policy).

    The moderated file is what gets trained on; the run's report (report.md, removed.jsonl,
    quarantine) lies beside it under the dataset's ``moderated/``.
    """
    from talklike.v1 import moderation_pb2, moderation_pb2_grpc

    stub = moderation_pb2_grpc.ModerationServiceStub(connect("moderation"))
    request = moderation_pb2.ModerateDatasetRequest(
        path=str(train_path.relative_to(home)),
        policy=moderation_pb2.ModerationPolicy(action=moderation_pb2.MODERATION_ACTION_DROP),
    )
    summary = follow("moderate", stub.ModerateDataset(request, timeout=600), progress)
    moderated = Path(summary.moderated_path)
    if not summary.kept_count:
        raise StageFailed(
            "moderate",
            f"nothing of {summary.line_count} lines passed moderation; see {summary.report_markdown_path}",
        )
    return {
        "moderated_path": str(moderated if moderated.is_absolute() else home / moderated),
        "report_path": summary.report_markdown_path,
        "kept": int(summary.kept_count),
        "removed": int(summary.removed_count),
        "quarantined": int(summary.quarantined_count),
    }


def train_stage(
    config: PipelineConfig, home: Path, train_path: Path, val_path: Path, progress: Progress
) -> dict[str, Any]:
    """Create the LoRA job and follow it to the end through StreamJobEvents."""
    stub = training_pb2_grpc.TrainingServiceStub(connect("training"))
    request = training_pb2.CreateJobRequest(
        dataset_path=str(train_path.relative_to(home)),
        validation_dataset_path=str(val_path.relative_to(home)) if val_path.is_file() else "",
        backend=training_pb2.TRAINING_BACKEND_PEFT,
        base_model=config.base_model,
        adapter_name=config.adapter_name,
        hyperparameters=training_pb2.Hyperparameters(
            max_steps=config.max_steps,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            max_sequence_tokens=config.max_sequence_tokens,
            lora_r=config.lora_r,
            lora_alpha=config.lora_alpha,
            eval_interval_steps=config.eval_interval_steps,
            early_stopping_patience=config.early_stopping_patience,
            seed=config.seed,
        ),
    )
    job = stub.CreateJob(request, timeout=60).job
    for event in stub.StreamJobEvents(training_pb2.StreamJobEventsRequest(job_id=job.id)):
        detail = f"loss {event.train_loss:.3f}" if event.kind == "step" else event.message[:60]
        progress("train", event.step, event.total_steps or config.max_steps, detail)
    job = stub.GetJob(training_pb2.GetJobRequest(job_id=job.id), timeout=30).job
    if job.state != training_pb2.JOB_STATE_SUCCEEDED:
        raise StageFailed(
            "train", f"job {job.id} {training_pb2.JobState.Name(job.state)}: {job.error_message}"
        )
    return {"job_id": job.id, "adapter": config.adapter_name, "adapter_path": str(home / job.adapter_path)}


def load_stage(adapter: str) -> dict[str, Any]:
    """Make sure the inference service serves the adapter (the training worker loads it when it can)."""
    from talklike.inference.client import InferenceClient

    client = InferenceClient()
    try:
        if adapter not in {a.name for a in client.models().adapters}:
            client.load_adapter(adapter)
        return {"adapter": adapter}
    finally:
        client.close()


def eval_stage(
    config: PipelineConfig, home: Path, heldout: Path, out: Path, progress: Progress
) -> dict[str, Any]:
    """The before/after benchmark on template-held-out and the pack's free-form questions, and the report."""
    from talklike.evaluation.heldout import freeform_items, read_heldout
    from talklike.evaluation.lexicon import lexicon_for_pack, pack_dir
    from talklike.evaluation.runner import EvalSettings, eval_calls, run_eval
    from talklike.inference.client import InferenceClient

    directory = pack_dir(config.pack, home)
    items = read_heldout(heldout, config.eval_questions)
    if config.freeform_questions:
        items += freeform_items(directory)
    lexicon = lexicon_for_pack(directory)
    done = [0]
    total = eval_calls(items)

    def advance(n: int) -> None:
        done[0] += n
        progress("eval", done[0], total, f"{len(items)} questions: answers before and after, perplexity")

    client = InferenceClient()
    try:
        run = f"{config.adapter_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        result, paths = run_eval(
            client,
            items,
            config.adapter_name,
            lexicon,
            out / "report",
            run,
            EvalSettings(
                max_new_tokens=config.max_new_tokens, seed=config.seed, concurrency=config.eval_concurrency
            ),
            None,
            advance,
        )
    finally:
        client.close()
    return {
        "report_path": str(paths["html"]),
        "xlsx_path": str(paths["xlsx"]),
        "summary_path": str(paths["summary"]),
        "questions": len(items),
        "wall_time_s": round(result.wall_time_s, 1),
    }


def config_inputs(config: PipelineConfig) -> dict[str, Any]:
    return asdict(config)


__all__ = [
    "PipelineConfig",
    "StageFailed",
    "StageRunner",
    "eval_stage",
    "generate_stage",
    "load_stage",
    "moderate_stage",
    "train_stage",
]
