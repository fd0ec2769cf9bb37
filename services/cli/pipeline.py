"""``talklike pipeline run``: generate → moderate → train → load the adapter → evaluate → report, one progress display."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID
from talklike.cli.output import console, err_console, fail, progress, table
from talklike.common.errors import TalklikeError
from talklike.common.paths import data_home, resolve_in_home

pipeline_app = typer.Typer(help="The whole pipeline, each stage through its service.", no_args_is_help=True)


@pipeline_app.command("run")
def run(
    pack: Annotated[str, typer.Option(help="Persona pack.")] = "babis",
    base_model: Annotated[
        str, typer.Option(help="Base model source: smollm2 (demo), tiny (tests), a directory...")
    ] = "smollm2",
    out: Annotated[str, typer.Option(help="Run directory inside the data home.")] = "runs/demo",
    count: Annotated[int, typer.Option(help="Examples to generate.")] = 600,
    seed: Annotated[int, typer.Option(help="Seed for generation, training and sampling.")] = 42,
    max_steps: Annotated[int, typer.Option(help="LoRA training steps.")] = 120,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (LoRA).")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 4,
    max_tokens: Annotated[
        int, typer.Option(help="Longest training example in tokens (babis examples run to ~250).")
    ] = 256,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (alpha = 2r).")] = 16,
    eval_questions: Annotated[int, typer.Option(help="Held-out questions in the benchmark.")] = 24,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length in the benchmark.")] = 64,
    home: Annotated[Path | None, typer.Option(help="Data home (default TALKLIKE_HOME or ./var).")] = None,
) -> None:
    """Run every stage through its service; an unchanged stage is skipped, a failed one says which and why."""
    from talklike.pipeline.run import (
        PipelineConfig,
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
    except TalklikeError as exc:
        fail(exc.message, "give --out a directory inside the data home, e.g. runs/demo")
    config = PipelineConfig(
        pack=pack,
        base_model=base_model,
        count=count,
        seed=seed,
        max_steps=max_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_sequence_tokens=max_tokens,
        lora_r=lora_r,
        lora_alpha=2.0 * lora_r,
        eval_questions=eval_questions,
        max_new_tokens=max_new_tokens,
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
                {"config": config.pack, "count": count, "seed": seed},
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
                    "config": {
                        k: v for k, v in vars(config).items() if k not in {"eval_questions", "max_new_tokens"}
                    },
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
                    "config": vars(config),
                },
                lambda: eval_stage(config, root, Path(dataset["heldout_path"]), out_dir, show),
            )
        except StageFailed as exc:
            fail(
                str(exc),
                f"fix the cause, then run the same command again: finished stages are kept ({out_dir / 'pipeline.json'})",
            )
    s, m, p = report["signature_rate"], report["marker_rate"], report["perplexity"]
    rows = [
        ("signature rate", f"{s[0]:.0%}", f"{s[1]:.0%}"),
        ("persona marker rate", f"{m[0]:.0%}", f"{m[1]:.0%}"),
    ]
    if p[0] is not None and p[1] is not None:
        rows.append(("held-out perplexity", f"{p[0]:.2f}", f"{p[1]:.2f}"))
    console.print(table(["metric", "before", "after"], rows, title=f"{pack} on {base_model}"))
    console.print(f"report: {report['report_path']}")
    console.print(f"spreadsheet: {report['xlsx_path']}")


def register(app: typer.Typer) -> None:
    """Add the ``pipeline`` group."""
    app.add_typer(pipeline_app, name="pipeline")
