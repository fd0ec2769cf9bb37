"""``talklike pipeline run``: generate → moderate → train → load the adapter → evaluate → report, one progress display."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID
from talklike.cli.evaluation import print_metric_tables
from talklike.cli.output import console, err_console, fail, progress
from talklike.common.errors import TalklikeError
from talklike.common.paths import data_home, resolve_in_home
from talklike.pipeline.config import PipelineConfig

pipeline_app = typer.Typer(help="The whole pipeline, each stage through its service.", no_args_is_help=True)


DEFAULTS = PipelineConfig()


@pipeline_app.command("run")
def run(
    pack: Annotated[str, typer.Option(help="Persona pack.")] = DEFAULTS.pack,
    base_model: Annotated[
        str,
        typer.Option(
            help="Base model source: gemma3-270m (demo, multilingual), smollm2 (English), tiny (tests), "
            "a directory..."
        ),
    ] = DEFAULTS.base_model,
    out: Annotated[str, typer.Option(help="Run directory inside the data home.")] = "runs/demo",
    count: Annotated[int, typer.Option(help="Examples to generate.")] = DEFAULTS.count,
    seed: Annotated[int, typer.Option(help="Seed for generation, training and sampling.")] = DEFAULTS.seed,
    max_steps: Annotated[int, typer.Option(help="LoRA training steps.")] = DEFAULTS.max_steps,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (LoRA).")] = DEFAULTS.learning_rate,
    batch_size: Annotated[int, typer.Option(help="Examples per micro-batch.")] = DEFAULTS.batch_size,
    gradient_accumulation: Annotated[
        int, typer.Option(help="Micro-batches per optimizer step.")
    ] = DEFAULTS.gradient_accumulation_steps,
    max_tokens: Annotated[
        int, typer.Option(help="Longest training example in tokens (babis examples run to ~250).")
    ] = DEFAULTS.max_sequence_tokens,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (alpha = 2r).")] = DEFAULTS.lora_r,
    patience: Annotated[
        int, typer.Option(help="Validation passes without improvement before stopping (0 = never).")
    ] = DEFAULTS.early_stopping_patience,
    eval_questions: Annotated[
        int, typer.Option(help="Template-held-out questions in the benchmark (0 = all).")
    ] = DEFAULTS.eval_questions,
    freeform: Annotated[
        bool, typer.Option(help="Also ask the pack's hand-written free-form questions.")
    ] = DEFAULTS.freeform_questions,
    max_new_tokens: Annotated[
        int, typer.Option(help="Answer length in the benchmark.")
    ] = DEFAULTS.max_new_tokens,
    eval_concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            help="Benchmark questions in flight at once; keep it within the inference service's "
            "TALKLIKE_INFERENCE_MAX_CONCURRENCY + MAX_QUEUE (8 + 32 by default).",
        ),
    ] = DEFAULTS.eval_concurrency,
    home: Annotated[Path | None, typer.Option(help="Data home (default TALKLIKE_HOME or ./var).")] = None,
) -> None:
    """Run every stage through its service; an unchanged stage is skipped, a failed one says which and why."""
    from talklike.evaluation.lexicon import pack_dir
    from talklike.pipeline.run import (
        eval_stage,
        generate_stage,
        load_stage,
        moderate_stage,
        train_stage,
    )
    from talklike.pipeline.stages import StageFailed, StageRunner

    root = data_home(home)
    try:
        out_dir = resolve_in_home(root, out, "out")
        pack_files = sorted(p for p in pack_dir(pack, root).rglob("*") if p.is_file())
    except TalklikeError as exc:
        fail(
            exc.message,
            "give --out a directory inside the data home and --pack a pack `talklike packs list` shows",
        )
    config = PipelineConfig(
        pack=pack,
        base_model=base_model,
        count=count,
        seed=seed,
        max_steps=max_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation,
        max_sequence_tokens=max_tokens,
        lora_r=lora_r,
        lora_alpha=2.0 * lora_r,
        early_stopping_patience=patience,
        eval_questions=eval_questions,
        freeform_questions=freeform,
        max_new_tokens=max_new_tokens,
        eval_concurrency=eval_concurrency,
    )
    with progress() as bar:
        tasks: dict[str, TaskID] = {}

        def show(stage: str, done: int, total: int, detail: str) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(
                tasks[stage], completed=done, total=total or None, description=f"{stage}: {detail}"[:70]
            )

        def announce(stage: str, what: str) -> None:
            err_console.print(f"[bold]{stage}[/]: {what}")

        runner = StageRunner(out_dir, announce)
        try:
            dataset = runner.run(
                "generate",
                {"config": config.pack, "pack_files": pack_files, "count": count, "seed": seed},
                lambda: generate_stage(config, root, out_dir, show),
            )
            moderated = runner.run(
                "moderate",
                {"train": Path(dataset["train_path"])},
                lambda: moderate_stage(root, Path(dataset["train_path"]), show),
            )
            train_path = Path(moderated["moderated_path"])
            val_path = Path(dataset["train_path"]).with_name("val.jsonl")
            trained = runner.run(
                "train",
                {
                    "train": train_path,
                    "val": val_path,
                    "config": config.training_inputs(),
                },
                lambda: train_stage(config, root, train_path, val_path, show),
            )
            runner.run("load", {}, lambda: load_stage(trained["adapter"]), always=True)
            adapter_manifest = Path(trained["adapter_path"]) / "adapter_manifest.json"
            report = runner.run(
                "eval",
                {
                    "adapter": adapter_manifest,
                    "heldout": Path(dataset["heldout_path"]),
                    "pack_files": pack_files,
                    "config": vars(config),
                },
                lambda: eval_stage(config, root, Path(dataset["heldout_path"]), out_dir, show),
            )
        except StageFailed as exc:
            fail(
                str(exc),
                f"fix the cause, then run the same command again: finished stages are kept ({out_dir / 'pipeline.json'})",
            )
    console.print(f"{pack} on {base_model}: {report['questions']} questions", highlight=False)
    print_metric_tables(json.loads(Path(report["summary_path"]).read_text(encoding="utf-8")))
    console.print(f"report: {report['report_path']}")
    console.print(f"spreadsheet: {report['xlsx_path']}")


def register(app: typer.Typer) -> None:
    """Add the ``pipeline`` group."""
    app.add_typer(pipeline_app, name="pipeline")
