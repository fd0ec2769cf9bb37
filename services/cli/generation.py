"""``talklike generate|validate|cost`` and ``talklike packs list|show|diff|draft``: the generation service.

``generate``, ``validate``, ``cost`` and the ``packs`` commands are calls to the generation service
(it reads the built-in packs and the data home's); ``packs list --local`` reads them from disk and
needs no service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from talklike.cli.output import console, err_console, fail, follow_stream, rpc_errors, table, warn
from talklike.common.client import connect
from talklike.common.paths import data_home
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc

SERVICE = "generation"
packs_app = typer.Typer(
    help="Persona packs: list them, show one, compare two, draft a new one with an LLM.",
    no_args_is_help=True,
)

HomeOption = Annotated[
    str | None,
    typer.Option("--home", help="Data home (default: TALKLIKE_HOME, else ./var).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def stub() -> pb_grpc.GenerationServiceStub:
    return pb_grpc.GenerationServiceStub(connect(SERVICE))


def _home_path(file: Path, home: Path) -> str:
    """``file`` relative to the data home when it lies inside (the service reads it there), else ""."""
    try:
        return str(file.resolve().relative_to(home))
    except ValueError:
        return ""


def _set_source(request: pb.ValidateDatasetRequest | pb.EstimateCostRequest, file: Path) -> None:
    """Name the file in the request: its path when it is in the data home (the service reads it
    there), else its bytes."""
    if not file.is_file():
        fail(f"{file} is not a file", "give the path of a JSONL file")
    inside = _home_path(file, data_home())
    if inside:
        request.path = inside
        return
    try:
        request.content = file.read_bytes()
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror}", "check the path and its permissions")


def _tokens_row(t: pb.TokenStats) -> str:
    return f"{t.total_tokens:,} ({t.encoding}; per example min {t.min_tokens}, mean {t.mean_tokens:.1f}, p95 {t.p95_tokens}, max {t.max_tokens})"


@rpc_errors(SERVICE)
def generate(
    pack: Annotated[str, typer.Option(help="Pack name (`talklike packs list`).")] = "babis",
    count: Annotated[int, typer.Option(help="Examples to write, 1 .. 1,000,000.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes byte-identical files.")] = 42,
    out: Annotated[
        str, typer.Option(help="Output directory; relative paths lie under <home>/datasets.")
    ] = "",
    batch_size: Annotated[int | None, typer.Option(help="Answers per batch (default 300).")] = None,
    slip_probability: Annotated[
        float | None, typer.Option(help="Chance of a language slip per answer, 0 .. 1 (default 0.15).")
    ] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="Share of examples for val.jsonl, 0 .. 0.5 (default 0.1).")
    ] = None,
    heldout: Annotated[
        int | None, typer.Option(help="Held-out benchmark questions to write (default 50).")
    ] = None,
    llm_base_url: Annotated[
        str,
        typer.Option(
            help="Write questions with an LLM at this OpenAI-compatible base URL (key: OPENAI_API_KEY)."
        ),
    ] = "",
    llm_model: Annotated[str, typer.Option(help="The LLM's model name.")] = "",
    llm_batch_size: Annotated[int, typer.Option(help="Answers per LLM request (0 = service default).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Generate a persona dataset: answers, journalist questions, split, held-out set, stats."""
    request = pb.GenerateDatasetRequest(pack=pack, count=count, seed=seed, out=out)
    if batch_size is not None:
        request.batch_size = batch_size
    if slip_probability is not None:
        request.slip_probability = slip_probability
    if val_fraction is not None:
        request.val_fraction = val_fraction
    if heldout is not None:
        request.heldout_count = heldout
    if llm_base_url or llm_model:
        if not (llm_base_url and llm_model):
            fail(
                "LLM mode needs both --llm-base-url and --llm-model",
                "give both, or neither for template questions",
            )
        request.question_mode = pb.QUESTION_MODE_LLM
        request.llm.base_url = llm_base_url
        request.llm.model = llm_model
        request.llm.batch_size = llm_batch_size
    summary: pb.DatasetSummary = follow_stream(stub().GenerateDataset(request), SERVICE, transient=as_json)
    if as_json:
        console.print_json(summary.stats_json)
        return
    stats = json.loads(summary.stats_json)
    console.print(
        table(
            ["file", "lines", "size"],
            [(Text(f.name), f.line_count, f"{f.size_bytes:,} B") for f in summary.files],
            title=f"dataset {summary.out_dir}",
        )
    )
    shares = stats.get("style_shares", {})
    console.print(
        table(
            ["style", "examples", "share"],
            [(Text(s), n, f"{shares.get(s, 0):.1%}") for s, n in stats.get("styles", summary.styles).items()],
        )
    )
    rows = [
        ("examples", f"{summary.count:,} (train {summary.train_count:,}, val {summary.val_count:,})"),
        ("held-out questions", f"{summary.heldout_count:,}"),
        ("language slips", f"{summary.language_error_rate:.1%}"),
        ("templates used", f"{summary.templates_used} of {stats.get('templates_available', '?')}"),
        ("duplicates removed", f"{summary.duplicates_removed:,}"),
        (
            "questions",
            f"{summary.template_question_count:,} from templates, {summary.llm_question_count:,} from the LLM",
        ),
        ("tokens", _tokens_row(summary.tokens)),
        ("time", f"{summary.elapsed_ms / 1000:.2f} s"),
    ]
    console.print(table(["", ""], rows, markup=False))


@rpc_errors(SERVICE)
def validate(
    file: Annotated[Path, typer.Argument(help="A chat JSONL file.")],
    out: Annotated[
        str, typer.Option(help="Where valid.jsonl and invalid/ go (default datasets/<name>-validated).")
    ] = "",
    model: Annotated[str, typer.Option(help="Model whose tokenizer counts tokens.")] = "",
    max_problems: Annotated[int, typer.Option(help="Problems to list here (all are in the report).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Check FILE against OpenAI's chat format; bad lines are quarantined, good ones kept. Exit 1 if any is bad."""
    request = pb.ValidateDatasetRequest(
        file_name=file.name, out=out, model=model, max_problems=max(1, max_problems)
    )
    _set_source(request, file)
    reply = stub().ValidateDataset(request)
    if as_json:
        console.print_json(
            data={
                "lines": reply.line_count,
                "valid": reply.valid_count,
                "invalid": reply.invalid_count,
                "problems": [
                    {"line_number": p.line_number, "field_path": p.field_path, "reason": p.reason}
                    for p in reply.problems
                ],
                "problems_omitted": reply.problems_omitted,
                "meets_minimum_examples": reply.meets_minimum_examples,
                "warnings": list(reply.warnings),
                "valid_path": reply.valid_path,
                "invalid_path": reply.invalid_path,
                "report_path": reply.report_path,
            }
        )
    else:
        if reply.problems:
            console.print(
                table(
                    ["line", "where", "problem"],
                    [(p.line_number, p.field_path, p.reason) for p in reply.problems],
                    title=f"{reply.invalid_count} bad lines in {file.name}",
                    markup=False,
                )
            )
            if reply.problems_omitted:
                console.print(
                    f"... and {reply.problems_omitted} more problems in {reply.report_path}", markup=False
                )
        for warning in reply.warnings:
            warn(warning)
        console.print(
            table(
                ["", ""],
                [
                    ("lines", f"{reply.line_count:,}"),
                    ("valid", f"{reply.valid_count:,} → {reply.valid_path}"),
                    ("quarantined", f"{reply.invalid_count:,} → {reply.invalid_path}"),
                    ("tokens", _tokens_row(reply.tokens)),
                ],
                markup=False,
            )
        )
    if reply.invalid_count:
        raise typer.Exit(1)


@rpc_errors(SERVICE)
def cost(
    file: Annotated[Path, typer.Argument(help="A chat JSONL file (the training file).")],
    model: Annotated[str, typer.Option(help="Model to fine-tune.")] = "gpt-4o-mini-2024-07-18",
    epochs: Annotated[
        int, typer.Option(help="Epochs, 1 .. 50; 0 = OpenAI's default for the file's size.")
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Token counts of FILE and what fine-tuning MODEL on it for EPOCHS would cost."""
    request = pb.EstimateCostRequest(model=model, epochs=epochs)
    _set_source(request, file)
    reply = stub().EstimateCost(request)
    if as_json:
        console.print_json(
            data={
                "model": reply.model,
                "price_entry": reply.price_entry,
                "price_source": reply.price_source,
                "training_usd_per_million_tokens": reply.training_usd_per_million_tokens,
                "example_token_limit": reply.example_token_limit,
                "examples": reply.tokens.example_count,
                "total_tokens": reply.tokens.total_tokens,
                "encoding": reply.tokens.encoding,
                "invalid_lines": reply.invalid_line_count,
                "examples_over_limit": reply.examples_over_limit,
                "billed_tokens_per_epoch": reply.billed_tokens_per_epoch,
                "epochs": reply.epochs,
                "epochs_defaulted": reply.epochs_defaulted,
                "billed_tokens": reply.billed_tokens,
                "cost_usd": round(reply.cost_usd, 6),
            }
        )
        return
    if reply.invalid_line_count:
        warn(
            f"{reply.invalid_line_count} invalid lines are not counted; `talklike validate {file}` lists them"
        )
    epochs_text = f"{reply.epochs}" + (
        " (OpenAI's default for this many examples)" if reply.epochs_defaulted else ""
    )
    console.print(
        table(
            ["", ""],
            [
                ("model", f"{reply.model} (price entry {reply.price_entry}, {reply.price_source})"),
                ("examples", f"{reply.tokens.example_count:,}"),
                ("tokens", _tokens_row(reply.tokens)),
                (
                    "over the limit",
                    f"{reply.examples_over_limit} (limit {reply.example_token_limit:,} tokens)",
                ),
                ("billed per epoch", f"{reply.billed_tokens_per_epoch:,} tokens"),
                ("epochs", epochs_text),
                (
                    "billed",
                    f"{reply.billed_tokens:,} tokens × ${reply.training_usd_per_million_tokens:g} per 1M",
                ),
                ("estimated cost", f"${reply.cost_usd:,.2f}"),
            ],
            markup=False,
        )
    )


def _local_home(home: str | None) -> Path:
    return data_home(home)


@packs_app.command("list")
def packs_list(
    as_json: JsonOption = False,
    local: Annotated[
        bool, typer.Option("--local", help="Read packs from disk instead of asking the service.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """The built-in and user packs with their counts."""
    rows: list[dict[str, Any]] = []
    if local:
        from talklike.packs.loader import describe, list_packs

        for entry in list_packs(_local_home(home)):
            if entry.pack is None:
                rows.append(
                    {"name": entry.name, "source": entry.source, "problems": [str(p) for p in entry.problems]}
                )
            else:
                rows.append({**describe(entry.pack), "problems": []})
    else:
        with rpc_errors(SERVICE):
            reply = stub().ListPacks(pb.ListPacksRequest())
        for p in reply.packs:
            rows.append(
                {
                    "name": p.name,
                    "display_name": p.display_name,
                    "language": p.language,
                    "satire": p.satire,
                    "source": p.source,
                    "templates": p.template_count,
                    "styles": p.style_count,
                    "placeholders": p.placeholder_count,
                    "questions": p.question_count,
                    "slips": p.slip_count,
                    "problems": list(p.problems),
                }
            )
    if as_json:
        console.print_json(data=rows)
        return
    console.print(
        table(
            [
                "pack",
                "persona",
                "language",
                "templates",
                "styles",
                "placeholders",
                "questions",
                "source",
                "state",
            ],
            [
                (
                    Text(r["name"]),
                    Text(r.get("display_name", "")),
                    r.get("language", ""),
                    r.get("templates", ""),
                    r.get("styles", ""),
                    r.get("placeholders", ""),
                    r.get("questions", ""),
                    r["source"],
                    Text(f"{len(r['problems'])} problems", style="red")
                    if r["problems"]
                    else Text("ok", style="green"),
                )
                for r in rows
            ],
        )
    )
    for r in rows:
        for problem in r["problems"][:10]:
            err_console.print(Text(f"{r['name']}: {problem}"))


@packs_app.command("show")
def packs_show(
    name: Annotated[str, typer.Argument(help="Pack name.")],
    sample: Annotated[
        int,
        typer.Option(
            "--sample", help="Also print this many generated examples (1 .. 100), to judge the voice."
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the sample.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """One pack: persona, counts, styles, placeholders (asked of the generation service)."""
    client = stub()
    with rpc_errors(SERVICE):
        reply = client.DescribePack(pb.DescribePackRequest(name=name))
        samples = (
            list(client.SamplePack(pb.SamplePackRequest(name=name, count=sample, seed=seed)).samples)
            if sample
            else []
        )
    info = _describe_dict(reply)
    if as_json:
        if sample:
            info["samples"] = [
                {
                    "style": s.style,
                    "topic": s.topic,
                    "template_id": s.template_id,
                    "question": s.question,
                    "answer": s.answer,
                }
                for s in samples
            ]
        console.print_json(data=info)
        return
    console.print(
        table(
            ["", ""],
            [
                ("pack", f"{info['name']} ({info['source']}, {info['path']})"),
                ("persona", info["display_name"] + (" — satire" if info["satire"] else "")),
                ("language", info["language"]),
                ("signature", info["signature"]),
                ("description", info["description"]),
                (
                    "counts",
                    f"{info['templates']} templates, {info['styles']} styles, {info['placeholders']} placeholders "
                    f"({info['placeholder_values']} values), {info['questions']} questions, {info['slips']} slips",
                ),
                ("distinct answers", f"about 10^{info['combinations_log10']}"),
            ],
            markup=False,
        )
    )
    console.print(
        table(
            ["style", "name", "templates", "description"],
            [(s["id"], s["name"], s["templates"], s["description"]) for s in info["styles_detail"]],
            markup=False,
        )
    )
    console.print(
        table(
            ["placeholder", "values"],
            [(f"{{{k}}}", v) for k, v in info["placeholders_detail"].items()],
            markup=False,
        )
    )
    if sample:
        _print_samples(samples, sample)


def _describe_dict(reply: pb.DescribePackResponse) -> dict[str, Any]:
    """DescribePack's reply in the shape ``packs show --json`` has always printed."""
    p = reply.pack
    return {
        "name": p.name,
        "display_name": p.display_name,
        "language": p.language,
        "signature": p.signature,
        "satire": p.satire,
        "description": p.description,
        "source": p.source,
        "path": p.path,
        "digest": p.digest,
        "templates": p.template_count,
        "styles": p.style_count,
        "placeholders": p.placeholder_count,
        "placeholder_values": reply.placeholder_value_count,
        "questions": p.question_count,
        "slips": p.slip_count,
        "topics": reply.topic_count,
        "catchphrases": reply.catchphrase_count,
        "declined_placeholders": reply.declined_placeholder_count,
        "freeform_questions": reply.freeform_question_count,
        "combinations": p.combination_count,
        "combinations_log10": reply.combinations_log10,
        "styles_detail": [
            {"id": s.id, "name": s.name, "description": s.description, "templates": s.template_count}
            for s in p.styles
        ],
        "placeholders_detail": {ph.name: ph.value_count for ph in reply.placeholders},
        "topic_placeholder": reply.topic_placeholder,
        "topics_list": list(reply.topics),
        "catchphrases_list": list(reply.catchphrases),
    }


def _print_samples(samples: list[Any], wanted: int) -> None:
    for number, s in enumerate(samples, start=1):
        console.print(Text(f"\n{number}. [{s.style} · {s.topic} · {s.template_id}]", style="bold"))
        console.print(Text(f"Q: {s.question}"))
        console.print(Text("A: " + s.answer.replace("\n", "\n   ")))
    if len(samples) < wanted:
        warn(f"the pack produced only {len(samples)} distinct answers of the {wanted} asked for")


@packs_app.command("diff")
def packs_diff(
    a: Annotated[str, typer.Argument(help="First pack.")],
    b: Annotated[str, typer.Argument(help="Second pack.")],
    as_json: JsonOption = False,
) -> None:
    """Compare two packs: sizes side by side, styles, and how their vocabularies overlap."""
    with rpc_errors(SERVICE):
        result = _diff_dict(stub().DiffPacks(pb.DiffPacksRequest(a=a, b=b)))
    if as_json:
        console.print_json(data=result)
        return
    console.print(
        table(
            ["", a, b, "Δ"],
            [(k, v["a"], v["b"], f"{v['delta']:+g}") for k, v in result["sizes"].items()],
            title=f"{a} ({result['a']['language']}) vs {b} ({result['b']['language']})",
            markup=False,
        )
    )
    styles = result["styles"]
    rows = [(s, c["a"], c["b"]) for s, c in styles["both"].items()]
    rows += [(s, "—", "") for s in styles["only_a"]]
    rows += [(s, "", "—") for s in styles["only_b"]]
    console.print(table(["style", f"templates in {a}", f"templates in {b}"], rows, markup=False))
    console.print(
        table(
            ["placeholder", "in", f"values in {a}", f"values in {b}", "shared"],
            [
                (f"{{{name}}}", row["in"], row["a"], row["b"], row["shared"])
                for name, row in result["placeholders"].items()
            ],
            markup=False,
        )
    )
    overlaps = [
        (what, row["a"], row["b"], row["shared"], f"{row['jaccard']:.0%}")
        for what, row in (
            ("topics", result["topics"]),
            ("words in templates", result["template_words"]),
            ("catchphrases", result["catchphrases"]),
        )
    ]
    console.print(table(["vocabulary", a, b, "shared", "overlap"], overlaps, markup=False))


def _number(value: float) -> int | float:
    """A count as an integer, a fraction as it is (the contract carries both as doubles)."""
    return int(value) if value.is_integer() else value


def _overlap_dict(row: pb.Overlap) -> dict[str, Any]:
    return {
        "a": row.a_count,
        "b": row.b_count,
        "shared": row.shared_count,
        "only_a": row.only_a_count,
        "only_b": row.only_b_count,
        "jaccard": row.jaccard,
    }


def _diff_dict(reply: pb.DiffPacksResponse) -> dict[str, Any]:
    """DiffPacks' reply in the shape ``packs diff --json`` has always printed."""
    placeholders: dict[str, Any] = {}
    for row in reply.placeholders:
        item = {**_overlap_dict(row), "in": row.present_in}
        if row.present_in == "both":
            item["examples_only_a"] = list(row.examples_only_a)
            item["examples_only_b"] = list(row.examples_only_b)
        placeholders[row.what] = item
    both = [s for s in reply.styles if s.HasField("a_template_count") and s.HasField("b_template_count")]
    return {
        "a": {
            "name": reply.a.name,
            "display_name": reply.a.display_name,
            "language": reply.a.language,
            "source": reply.a.source,
        },
        "b": {
            "name": reply.b.name,
            "display_name": reply.b.display_name,
            "language": reply.b.language,
            "source": reply.b.source,
        },
        "sizes": {
            size.what: {"a": _number(size.a), "b": _number(size.b), "delta": _number(size.delta)}
            for size in reply.sizes
        },
        "styles": {
            "only_a": [s.id for s in reply.styles if not s.HasField("b_template_count")],
            "only_b": [s.id for s in reply.styles if not s.HasField("a_template_count")],
            "both": {s.id: {"a": s.a_template_count, "b": s.b_template_count} for s in both},
        },
        "placeholders": placeholders,
        "topics": _overlap_dict(reply.topics),
        "template_words": _overlap_dict(reply.template_words),
        "catchphrases": _overlap_dict(reply.catchphrases),
        "mean_template_chars": {"a": reply.a_mean_template_chars, "b": reply.b_mean_template_chars},
    }


@packs_app.command("draft")
@rpc_errors(SERVICE)
def packs_draft(
    name: Annotated[str, typer.Argument(help="Name of the new pack (lower-case letters, digits, - and _).")],
    describe: Annotated[
        str, typer.Option("--describe", help="Who the persona is, its language and tone, in plain words.")
    ],
    llm_base_url: Annotated[
        str,
        typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8054/v1 (key: OPENAI_API_KEY)."),
    ],
    llm_model: Annotated[str, typer.Option(help="The LLM's model name at that URL.")],
    templates: Annotated[int, typer.Option(help="Answer templates wanted, 10 .. 5,000.")] = 400,
    examples: Annotated[
        Path | None,
        typer.Option(help="A text file of sample answers in the persona's voice (blank-line separated)."),
    ] = None,
    language: Annotated[
        str, typer.Option(help="BCP 47 tag of the persona's language (default: the LLM decides).")
    ] = "",
    styles: Annotated[int, typer.Option(help="Styles, 2 .. 8 (0 = chosen from --templates).")] = 0,
    batch_size: Annotated[
        int,
        typer.Option(
            help="Templates asked for per LLM call (0 = the service's setting; 3-5 for small models)."
        ),
    ] = 0,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature, 0 .. 2.")] = None,
    retries: Annotated[
        int | None,
        typer.Option(help="Times a malformed answer is asked again with the problem, 0 .. 10 (default 2)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Replace an existing user pack of that name once the draft passes.")
    ] = False,
    fresh: Annotated[
        bool, typer.Option(help="Ignore answers cached by an earlier run (do not resume).")
    ] = False,
    satire: Annotated[bool, typer.Option(help="Mark the persona as satire in persona.yaml.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Draft a new persona pack with an LLM, step by step; it lands in <home>/packs/NAME only if it passes."""
    request = pb.DraftPackRequest(
        name=name,
        description=describe,
        template_count=max(0, templates),
        language=language,
        style_count=max(0, styles),
        replace=replace,
        fresh=fresh,
        satire=satire,
        llm=pb.LlmOptions(base_url=llm_base_url, model=llm_model, batch_size=max(0, batch_size)),
    )
    if temperature is not None:
        request.llm.temperature = temperature
    if retries is not None:
        request.malformed_retries = max(0, retries)
    if examples is not None:
        try:
            request.examples = examples.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            fail(f"cannot read the examples file {examples}: {error}", "give a UTF-8 text file")
    summary: pb.DraftSummary = follow_stream(stub().DraftPack(request), SERVICE, transient=as_json)
    if as_json:
        console.print_json(summary.report_json)
        return
    report = json.loads(summary.report_json)
    console.print(
        table(
            ["style", "templates", "asked for", "LLM calls"],
            [(s, row["templates"], row["requested"], row["calls"]) for s, row in report["styles"].items()],
            title=f"pack {summary.name} → {summary.pack_path}",
            markup=False,
        )
    )
    calls = (
        f"{summary.llm_request_count} requests, {summary.cache_hit_count} answers from the cache, "
        f"{summary.transport_retry_count} retried after errors, {summary.malformed_answer_count} malformed"
    )
    rows = [
        ("templates", f"{summary.template_count} of {summary.requested_template_count}"),
        ("questions", str(summary.question_count)),
        ("placeholders", f"{summary.placeholder_count} ({summary.placeholder_value_count} values)"),
        ("LLM", calls),
        ("rejected items", f"{summary.rejected_item_count}"),
        ("report", summary.report_path),
        ("time", f"{summary.elapsed_ms / 1000:.1f} s"),
    ]
    console.print(table(["", ""], rows, markup=False))
    if summary.rejected_by_reason:
        console.print(
            table(
                ["rejected because", "items"],
                sorted(summary.rejected_by_reason.items(), key=lambda kv: -kv[1]),
                markup=False,
            )
        )
    for note in report.get("notes", []):
        warn(note)
    if summary.shortfall_count:
        warn(
            f"{summary.shortfall_count} templates short of the {summary.requested_template_count} asked for: "
            "run again with --replace and a larger --templates, or with a stronger model"
        )
    console.print(f"review it: talklike packs show {summary.name} --sample 10", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``generate``, ``validate``, ``cost`` and the ``packs`` group."""
    app.command("generate")(generate)
    app.command("validate")(validate)
    app.command("cost")(cost)
    app.add_typer(packs_app, name="packs")
