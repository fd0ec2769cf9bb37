"""``talklike eval``: the before/after benchmark of an adapter, through the inference service."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from talklike.cli.output import console, fail, progress, rpc_errors, table
from talklike.common.errors import TalklikeError
from talklike.common.paths import data_home, resolve_in_home


def evaluate(
    adapter: Annotated[str, typer.Option(help="Adapter to compare with the base model.")],
    heldout: Annotated[
        Path, typer.Option(help="Held-out chat JSONL (the generation service writes heldout.jsonl).")
    ],
    out: Annotated[
        str, typer.Option(help="Report directory inside the data home (default reports/<adapter>-<time>).")
    ] = "",
    pack: Annotated[str, typer.Option(help="Persona pack whose lexicon is scored.")] = "babis",
    limit: Annotated[int, typer.Option(help="Use only the first N questions (0 = all).")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit for both sides.")] = 96,
    temperature: Annotated[float, typer.Option(help="0 = greedy (the default: comparable answers).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampling seed, the same for both sides.")] = 7,
    judge_base_url: Annotated[
        str, typer.Option(help="OpenAI-compatible endpoint for the optional LLM judge.")
    ] = "",
    judge_model: Annotated[str, typer.Option(help="Judge model name.")] = "",
    home: Annotated[Path | None, typer.Option(help="Data home (default TALKLIKE_HOME or ./var).")] = None,
) -> None:
    """Answer every held-out question with the base model and the adapter, score both, write the report."""
    from talklike.evaluation.heldout import read_heldout
    from talklike.evaluation.judge import PairwiseJudge
    from talklike.evaluation.lexicon import lexicon_for_pack, pack_dir
    from talklike.evaluation.runner import EvalSettings, run_eval
    from talklike.inference.client import InferenceClient

    root = data_home(home)
    run = f"{adapter}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out_dir = resolve_in_home(root, out or f"reports/{run}", "out")
        items = read_heldout(heldout, limit)
        lexicon = lexicon_for_pack(pack_dir(pack, root))
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
    settings = EvalSettings(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    with rpc_errors("inference"), progress() as bar:
        task = bar.add_task("answering and scoring", total=len(items) * 4)
        result, paths = run_eval(
            client, items, adapter, lexicon, out_dir, run, settings, judge, lambda n: bar.advance(task, n)
        )
    client.close()
    rows = [
        ("signature rate", f"{result.before.signature_rate:.0%}", f"{result.after.signature_rate:.0%}"),
        ("persona marker rate", f"{result.before.marker_rate:.0%}", f"{result.after.marker_rate:.0%}"),
        (
            "in the persona's language",
            f"{result.before.language_rate:.0%}",
            f"{result.after.language_rate:.0%}",
        ),
        ("distinct-2", f"{result.before.distinct_2:.2f}", f"{result.after.distinct_2:.2f}"),
    ]
    if result.perplexity_before is not None and result.perplexity_after is not None:
        rows.append(
            ("held-out perplexity", f"{result.perplexity_before:.2f}", f"{result.perplexity_after:.2f}")
        )
    console.print(
        table(["metric", "before (base)", "after (adapter)"], rows, title=f"{len(items)} held-out questions")
    )
    console.print(f"report: {paths['html']}")


def register(app: typer.Typer) -> None:
    """Add ``eval``."""
    app.command("eval")(evaluate)
