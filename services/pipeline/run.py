"""``talklike pipeline run``: every stage through its service, resumable, one progress display."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from talklike.pipeline.config import PipelineConfig
from talklike.pipeline.stages import StageFailed, StageRunner

Progress = Callable[[str, int, int, str], None]  # stage, done, total, detail


def _shown(stage: str, progress: Progress) -> Callable[[int, int, str], None]:
    """A client's progress callback that feeds the pipeline's display under ``stage``."""

    def show(done: int, total: int, detail: str) -> None:
        progress(stage, done, total, detail)

    return show


def generate_stage(config: PipelineConfig, home: Path, out: Path, progress: Progress) -> dict[str, Any]:
    """The persona dataset, through GenerationService.GenerateDataset."""
    from talklike.generation.client import GenerationClient

    with GenerationClient() as generation:
        dataset = generation.generate_dataset(
            config.pack, config.count, config.seed, f"pipeline-{out.name}", _shown("generate", progress)
        )
    directory = Path(dataset.out_dir)
    directory = directory if directory.is_absolute() else home / directory
    return {
        "dataset_path": str(directory),
        "train_path": str(directory / "train.jsonl"),
        "heldout_path": str(directory / "heldout.jsonl"),
        "count": dataset.count,
    }


def moderate_stage(home: Path, train_path: Path, progress: Progress) -> dict[str, Any]:
    """The training split through ModerationService.ModerateDataset (drop what violates the policy).

    The moderated file is what gets trained on; the run's report (report.md, removed.jsonl,
    quarantine) lies beside it under the dataset's ``moderated/``.
    """
    from talklike.moderation.client import ModerationClient

    with ModerationClient() as moderation:
        result = moderation.moderate_dataset(
            str(train_path.relative_to(home)), "drop", _shown("moderate", progress)
        )
    moderated = Path(result.moderated_path)
    if not result.kept:
        raise StageFailed(
            "moderate",
            f"nothing of {result.line_count} lines passed moderation; see {result.report_markdown_path}",
        )
    return {
        "moderated_path": str(moderated if moderated.is_absolute() else home / moderated),
        "report_path": result.report_markdown_path,
        "kept": result.kept,
        "removed": result.removed,
        "quarantined": result.quarantined,
    }


def train_stage(
    config: PipelineConfig, home: Path, train_path: Path, val_path: Path, progress: Progress
) -> dict[str, Any]:
    """Create the LoRA job and follow it to the end through StreamJobEvents."""
    from talklike.training.client import Hyperparameters, TrainingClient

    with TrainingClient() as training:
        job = training.create_job(
            dataset_path=str(train_path.relative_to(home)),
            validation_dataset_path=str(val_path.relative_to(home)) if val_path.is_file() else "",
            base_model=config.base_model,
            adapter_name=config.adapter_name,
            hyperparameters=Hyperparameters(
                max_steps=config.max_steps,
                learning_rate=config.learning_rate,
                batch_size=config.batch_size,
                gradient_accumulation_steps=config.gradient_accumulation_steps,
                max_sequence_tokens=config.max_sequence_tokens,
                lora_r=config.lora_r,
                lora_alpha=config.lora_alpha,
                eval_interval_steps=config.validation_interval_steps,
                early_stopping_patience=config.early_stopping_patience,
                seed=config.seed,
            ),
        )
        for event in training.events(job.id):
            detail = f"loss {event.train_loss:.3f}" if event.kind == "step" else event.message[:60]
            progress("train", event.step, event.total_steps or config.max_steps, detail)
        job = training.get_job(job.id)
    if not job.succeeded:
        raise StageFailed("train", f"job {job.id} {job.state}: {job.error_message}")
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
                max_new_tokens=config.max_new_tokens,
                temperature=config.eval_temperature,
                top_k=config.eval_top_k,
                seed=config.seed,
                repetition_penalty=config.eval_repetition_penalty,
                presence_penalty=config.eval_presence_penalty,
                frequency_penalty=config.eval_frequency_penalty,
                concurrency=config.eval_concurrency,
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
