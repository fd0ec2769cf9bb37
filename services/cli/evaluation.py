"""``talklike eval``: the before/after benchmark of an adapter, and ``eval compare`` of two reports."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from talklike.cli.output import console, fail, progress, rpc_errors, table
from talklike.common.errors import TalklikeError
from talklike.common.paths import data_home, resolve_in_home

eval_app = typer.Typer(
    help="The before/after benchmark: `talklike eval --adapter A --heldout FILE`; "
    "`talklike eval compare REPORT_A REPORT_B` compares two reports.",
    invoke_without_command=True,
)


def _with_interval(metric: Any, side: dict[str, Any]) -> str:
    """ "43% [32%–55%]", with the opening words for the same-opening share."""
    from talklike.evaluation.report import shown

    text = shown(metric, side.get("value"))
    if side.get("opening"):
        text += f" “{side['opening']}”"
    ci = side.get("ci")
    if ci:
        text += f" [{shown(metric, ci[0])}–{shown(metric, ci[1])}]"
    return text


def _p(value: float | None) -> str:
    return "–" if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"


def print_metric_tables(summary: dict[str, Any]) -> None:
    """The summary of a run (``summary.json``'s shape) as tables: each question source, then all."""
    from talklike.evaluation.metrics import METRICS
    from talklike.evaluation.report import BLOCK_TITLES, block_names

    for block_name in block_names(list(summary.get("sources") or [])):
        block = summary["metrics"][block_name]
        rows = [
            (
                metric.label,
                _with_interval(metric, block[metric.key]["before"]),
                _with_interval(metric, block[metric.key]["after"]),
                _p(block[metric.key]["p_value"]),
            )
            for metric in METRICS
        ]
        title = f"{BLOCK_TITLES.get(block_name, block_name)}: {block['questions']} questions (95% intervals)"
        console.print(
            table(
                ["metric", "before (base)", "after (adapter)", "p (paired)"], rows, title=title, markup=False
            )
        )


@eval_app.callback()
def evaluate(
    ctx: typer.Context,
    adapter: Annotated[str, typer.Option(help="Adapter to compare with the base model.")] = "",
    heldout: Annotated[
        Path | None,
        typer.Option(help="Held-out chat JSONL (the generation service writes heldout.jsonl)."),
    ] = None,
    out: Annotated[
        str, typer.Option(help="Report directory inside the data home (default reports/<adapter>-<time>).")
    ] = "",
    pack: Annotated[
        str, typer.Option(help="Persona pack whose lexicon and free-form questions are used.")
    ] = "babis",
    freeform: Annotated[
        bool,
        typer.Option(
            "--freeform/--no-freeform", help="Also ask the pack's free-form questions (freeform.yaml)."
        ),
    ] = True,
    limit: Annotated[int, typer.Option(help="Use only the first N questions of each source (0 = all).")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit for both sides.")] = 96,
    temperature: Annotated[float, typer.Option(help="0 = greedy (the default: comparable answers).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampling seed, the same for both sides.")] = 7,
    concurrency: Annotated[
        int, typer.Option(help="Requests in flight at once (0 = every question of a side at once).")
    ] = 8,
    judge_base_url: Annotated[
        str, typer.Option(help="OpenAI-compatible endpoint for the optional LLM judge.")
    ] = "",
    judge_model: Annotated[str, typer.Option(help="Judge model name.")] = "",
    home: Annotated[Path | None, typer.Option(help="Data home (default TALKLIKE_HOME or ./var).")] = None,
) -> None:
    """Answer every question with the base model and the adapter, score both, write the report."""
    if ctx.invoked_subcommand is not None:
        return
    if not adapter or heldout is None:
        fail(
            "--adapter and --heldout are required",
            "e.g. talklike eval --adapter babis --heldout heldout.jsonl",
        )
    from talklike.evaluation.heldout import freeform_items, read_heldout
    from talklike.evaluation.judge import PairwiseJudge
    from talklike.evaluation.lexicon import lexicon_for_pack, pack_dir
    from talklike.evaluation.runner import EvalSettings, eval_calls, run_eval
    from talklike.inference.client import InferenceClient

    root = data_home(home)
    run = f"{adapter}-{time.strftime('%Y%m%d-%H%M%S')}"
    if concurrency < 0:
        fail(f"--concurrency must be 0 or more, got {concurrency}", "use 0 to send every question at once")
    try:
        out_dir = resolve_in_home(root, out or f"reports/{run}", "out")
        items = read_heldout(heldout, limit)
        directory = pack_dir(pack, root)
        lexicon = lexicon_for_pack(directory)
        if freeform:
            items += freeform_items(directory, limit)
    except TalklikeError as exc:
        fail(exc.message, "check the option named above")
    judge = None
    if judge_base_url:
        if not judge_model:
            fail(
                "--judge-base-url needs --judge-model", "name the judge model, e.g. --judge-model gpt-4o-mini"
            )
        judge = PairwiseJudge(judge_base_url, judge_model, f"the {pack} persona pack", lexicon.signature)
    client = InferenceClient()
    settings = EvalSettings(
        max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, concurrency=concurrency
    )
    with rpc_errors("inference"), progress() as bar:
        task = bar.add_task("answering and scoring", total=eval_calls(items))
        result, paths = run_eval(
            client, items, adapter, lexicon, out_dir, run, settings, judge, lambda n: bar.advance(task, n)
        )
    client.close()
    print_metric_tables(result.summary_dict())
    console.print(f"report: {paths['html']}")


@eval_app.command("compare")
def compare_reports(
    report_a: Annotated[Path, typer.Argument(help="The first report: its directory or its summary.json.")],
    report_b: Annotated[Path, typer.Argument(help="The second report (compared against the first).")],
    source: Annotated[str, typer.Option(help="Which questions: overall, template or freeform.")] = "overall",
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when this metric got significantly worse in B (repeatable, e.g. loop_rate).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Both runs' "after" metrics side by side, the difference, and whether it is significant."""
    from talklike.evaluation.compare import check_fail_on, compare, read_summary, worse

    try:
        failing_keys = check_fail_on(list(fail_on or []))
        a = read_summary(report_a, "report_a")
        b = read_summary(report_b, "report_b")
        differences = compare(a, b, source)
    except TalklikeError as exc:
        fail(exc.message, "check the argument named above")
    got_worse = worse(differences, failing_keys)
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "source": source,
                    "a": a.get("run"),
                    "b": b.get("run"),
                    "metrics": {
                        d.metric.key: {
                            "a": d.a,
                            "b": d.b,
                            "difference": d.difference,
                            "p_value": d.p_value,
                            "significant": d.significant,
                            "verdict": d.verdict,
                        }
                        for d in differences
                    },
                    "failed": [d.metric.key for d in got_worse],
                },
                ensure_ascii=False,
            )
        )
    else:
        rows = []
        for d in differences:
            change = (
                "–"
                if d.difference is None
                else f"{d.difference:+.0%}"
                if d.metric.percent
                else f"{d.difference:+,.2f}"
            )
            how = (
                f"p={_p(d.p_value)}"
                if d.p_value is not None
                else "intervals apart"
                if d.significant
                else "intervals overlap"
                if d.metric.kind != "set"
                else "no interval"
            )
            rows.append(
                (
                    d.metric.key,
                    _with_interval(d.metric, d.a),
                    _with_interval(d.metric, d.b),
                    change,
                    f"{'yes' if d.significant else 'no'} ({how})",
                    d.verdict or "–",
                )
            )
        console.print(
            table(
                [
                    "metric",
                    f"A: {a.get('run', report_a)}",
                    f"B: {b.get('run', report_b)}",
                    "B − A",
                    "significant",
                    "B is",
                ],
                rows,
                title=f"after (adapter), {source} questions",
                markup=False,
            )
        )
    if got_worse:
        fail(
            "significantly worse in B: " + ", ".join(d.metric.key for d in got_worse),
            "look at report B's flagged answers before using this adapter",
        )


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``eval compare``."""
    app.add_typer(eval_app, name="eval")
