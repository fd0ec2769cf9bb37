"""``talklike moderate FILE``, ``talklike moderate text`` and ``talklike moderate eval``: the moderation service.

``moderate FILE`` sends a chat JSONL file (its path when it lies in the data home, else its
bytes) to ModerateDataset and shows the progress and a summary; ``text`` scores texts given
on the command line; ``eval`` sends the shipped labelled set through Moderate and prints
precision and recall per category. All three are calls to the service, so what they show
is what any other client of the service gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict
from rich.text import Text
from talklike.cli.output import console, fail, follow_stream, progress, rpc_errors, table
from talklike.common.client import connect
from talklike.common.paths import data_home
from talklike.v1 import common_pb2
from talklike.v1 import moderation_pb2 as pb
from talklike.v1 import moderation_pb2_grpc as pb_grpc
from typer.core import TyperGroup

SERVICE = "moderation"
BACKENDS: dict[str, pb.ModerationBackend.ValueType] = {
    "": pb.MODERATION_BACKEND_UNSPECIFIED,
    "local": pb.MODERATION_BACKEND_LOCAL,
    "openai": pb.MODERATION_BACKEND_OPENAI,
}
ROLES: dict[str, common_pb2.ChatRole.ValueType] = {
    "system": common_pb2.CHAT_ROLE_SYSTEM,
    "user": common_pb2.CHAT_ROLE_USER,
    "assistant": common_pb2.CHAT_ROLE_ASSISTANT,
}
ACTIONS: dict[str, pb.ModerationAction.ValueType] = {
    "drop": pb.MODERATION_ACTION_DROP,
    "annotate": pb.MODERATION_ACTION_ANNOTATE,
}


class _FileOrCommand(TyperGroup):
    """``talklike moderate FILE`` runs the ``dataset`` command; ``eval`` and ``text`` are commands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["dataset", *args]
        return super().parse_args(ctx, args)


moderate_app = typer.Typer(
    cls=_FileOrCommand,
    help="Moderate a chat dataset before it is uploaded: `talklike moderate FILE --out DIR`; "
    "`talklike moderate text TEXT...`; `talklike moderate eval` (precision/recall of a backend).",
    no_args_is_help=True,
)

BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help="local (offline lexicon) or openai (omni-moderation-latest); default: the service's.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def stub() -> pb_grpc.ModerationServiceStub:
    return pb_grpc.ModerationServiceStub(connect(SERVICE))


def _backend(value: str) -> pb.ModerationBackend.ValueType:
    if value not in BACKENDS:
        fail(f"unknown backend {value!r}", "use --backend local or --backend openai")
    return BACKENDS[value]


def parse_thresholds(values: list[str]) -> dict[str, float]:
    """``CATEGORY=VALUE`` pairs; the service checks the names and the range."""
    out: dict[str, float] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            name = ""
        if not sep or not name.strip():
            fail(
                f"--threshold {value!r} is not CATEGORY=VALUE",
                "e.g. --threshold hate=0.2 --threshold sexual=0.3",
            )
    return out


def _home_path(file: Path, home: Path) -> str:
    """``file`` relative to the data home when it lies inside (the service reads it there), else ""."""
    try:
        return str(file.resolve().relative_to(home))
    except ValueError:
        return ""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _verdict(check: pb.PreflightCheck) -> Text:
    blocked = check.verdict == pb.PREFLIGHT_VERDICT_LIKELY_BLOCKED
    return Text("LIKELY BLOCKED" if blocked else "pass", style="bold red" if blocked else "green")


@moderate_app.command("dataset")
@rpc_errors(SERVICE)
def dataset(
    file: Annotated[Path, typer.Argument(help="A chat JSONL file (OpenAI's fine-tuning format).")],
    backend: BackendOption = "",
    out: Annotated[
        str,
        typer.Option(
            help="Output directory; relative paths lie under <home>/datasets "
            "(default: 'moderated' beside FILE in the home, else datasets/<name>-moderated)."
        ),
    ] = "",
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold", help="CATEGORY=VALUE, repeatable: a score at or above it violates the policy."
        ),
    ] = None,
    roles: Annotated[str, typer.Option(help="Turns to check, comma-separated (default: all).")] = "",
    action: Annotated[
        str, typer.Option(help="drop (leave violating examples out) or annotate (keep and list them).")
    ] = "drop",
    flagged_share_limit: Annotated[
        float | None,
        typer.Option(help="Pre-flight: flagged share over which the file is likely blocked (default 0.01)."),
    ] = None,
    worst: Annotated[int, typer.Option(help="Worst examples listed in the report.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Moderate FILE: the moderated dataset, removed examples, quarantine, report.json and report.md."""
    if action not in ACTIONS:
        fail(f"unknown action {action!r}", "use --action drop or --action annotate")
    request = pb.ModerateDatasetRequest(
        file_name=file.name, out=out, backend=_backend(backend), worst_example_count=max(0, worst)
    )
    request.policy.action = ACTIONS[action]
    request.policy.thresholds.update(parse_thresholds(threshold or []))
    for role in (r.strip() for r in roles.split(",") if r.strip()):
        if role not in ROLES:
            fail(f"unknown role {role!r}", "use --roles with system, user and/or assistant")
        request.policy.roles.append(ROLES[role])
    if flagged_share_limit is not None:
        request.policy.flagged_share_limit = flagged_share_limit
    if not file.is_file():
        fail(f"{file} is not a file", "give the path of a chat JSONL file")
    inside = _home_path(file, data_home())
    if inside:
        request.path = inside
    else:
        try:
            request.content = file.read_bytes()
        except OSError as error:
            fail(f"cannot read {file}: {error.strerror}", "check the path and its permissions")
    summary: pb.ModerationSummary = follow_stream(stub().ModerateDataset(request), SERVICE, transient=as_json)
    if as_json:
        console.print_json(data=MessageToDict(summary, preserving_proto_field_name=True))
        return
    show_summary(summary)


def show_summary(summary: pb.ModerationSummary) -> None:
    """The counts, the categories with anything in them, the pre-flight verdicts and the files."""
    share = summary.input_preflight.flagged_share
    removed_label = (
        "removed" if summary.action != pb.MODERATION_ACTION_ANNOTATE else "removed (annotate keeps them)"
    )
    console.print(
        table(
            ["", ""],
            [
                ("lines read", f"{summary.line_count:,}"),
                ("kept", f"{summary.kept_count:,}"),
                (removed_label, f"{summary.removed_count:,}"),
                ("quarantined", f"{summary.quarantined_count:,}"),
                ("violating the policy", f"{summary.flagged_count:,} ({share:.1%} of examples)"),
                ("backend", f"{summary.backend} ({summary.model}), {summary.text_count:,} distinct texts"),
                ("time", f"{summary.elapsed_ms / 1000:.2f} s"),
            ],
            title=f"moderated {summary.out_dir}",
            markup=False,
        )
    )
    rows = [
        (c.category, f"{c.threshold:.2f}", c.violation_count, c.backend_flagged_count, f"{c.max_score:.3f}")
        for c in summary.categories
        if c.violation_count or c.backend_flagged_count
    ]
    if rows:
        console.print(
            table(
                ["category", "threshold", "violating", "flagged by backend", "max score"], rows, markup=False
            )
        )
    for label, check in (("input", summary.input_preflight), ("output", summary.output_preflight)):
        console.print(Text.assemble(f"pre-flight ({label}): ", _verdict(check), f" — {check.advice}"))
    console.print(
        table(
            ["file", "path"],
            [
                ("moderated dataset", summary.moderated_path),
                (
                    "removed" if summary.action != pb.MODERATION_ACTION_ANNOTATE else "flagged",
                    summary.flagged_path,
                ),
                ("quarantine", summary.quarantine_path),
                ("report.json", summary.report_json_path),
                ("report.md", summary.report_markdown_path),
            ],
            markup=False,
        )
    )


@moderate_app.command("text")
@rpc_errors(SERVICE)
def text(
    texts: Annotated[list[str], typer.Argument(help="Texts to score.")],
    backend: BackendOption = "",
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="CATEGORY=VALUE, repeatable (default: the policy's)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score TEXTS: the categories over the policy's thresholds, the top scores, and why."""
    request = pb.ModerateRequest(texts=texts, backend=_backend(backend))
    request.thresholds.update(parse_thresholds(threshold or []))
    reply = stub().Moderate(request)
    if as_json:
        console.print_json(
            data=[
                {
                    "text": t,
                    "flagged": r.flagged,
                    "policy_violations": list(r.policy_violations),
                    "category_scores": dict(r.category_scores),  # in the service's (OpenAI's) order
                    "reasons": list(r.reasons),
                }
                for t, r in zip(texts, reply.results, strict=True)
            ]
        )
        return
    rows = []
    for t, r in zip(texts, reply.results, strict=True):
        top = sorted(((s, c) for c, s in r.category_scores.items() if s > 0), reverse=True)[:3]
        rows.append(
            (
                t if len(t) <= 60 else t[:59] + "…",
                ", ".join(r.policy_violations) or "–",
                ", ".join(f"{c} {s:.2f}" for s, c in top) or "–",
            )
        )
    console.print(
        table(
            ["text", "violates", "top scores"], rows, title=f"{reply.backend} ({reply.model})", markup=False
        )
    )


@moderate_app.command("eval")
@rpc_errors(SERVICE)
def eval_command(
    backend: BackendOption = "",
    split: Annotated[str, typer.Option(help="dev (tuned on), test (not tuned on) or all.")] = "all",
    lang: Annotated[str, typer.Option(help="cs, en or all.")] = "all",
    set_file: Annotated[
        Path | None,
        typer.Option("--set", help="A labelled JSONL set in the same format, inside the data home."),
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="List the texts the backend got wrong.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the table as Markdown (for a README).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Precision and recall per category of a backend on the labelled set shipped with talklike."""
    set_path = ""
    if set_file is not None:
        home = data_home(None)
        set_path = _home_path(set_file, home)
        if not set_path:
            fail(f"{set_file} is not inside the data home {home}", "put the labelled set under the data home")
    with progress(transient=True) as bar:
        bar.add_task("eval", total=None)
        reply = stub().EvaluateBackend(
            pb.EvaluateBackendRequest(
                backend=_backend(backend),
                split="" if split == "all" else split,
                lang="" if lang == "all" else lang,
                set_path=set_path,
            )
        )
    model = f"{reply.backend} ({reply.model})"
    rows = [*reply.categories, reply.any_flagged, reply.any_policy]
    title = f"{model} on {reply.text_count} labelled texts (split {split}, lang {lang})"
    if as_json:
        console.print_json(data={"backend": model, "split": split, "lang": lang, **_evaluation_dict(reply)})
        return
    if markdown:
        console.print(f"{title}\n\n{_markdown(rows)}", markup=False, highlight=False)
        return
    console.print(
        table(
            ["category", "support", "precision", "recall", "false positives"],
            [
                (r.category, _support(r), _pct(_precision(r)), _pct(_recall(r)), r.false_positive_count)
                for r in rows
            ],
            title=title,
            markup=False,
        )
    )
    alarms = ", ".join(
        f"{kind} {n} of {reply.kind_counts[kind]}" for kind, n in reply.false_alarm_counts.items()
    )
    console.print(
        f"texts over the policy's thresholds that should not be: {alarms}", markup=False, highlight=False
    )
    if errors and reply.misses:
        console.print(
            table(
                ["id", "missed", "extra", "text"],
                [(m.id, ", ".join(m.missed), ", ".join(m.extra), m.text) for m in reply.misses],
                title="wrong",
                markup=False,
            )
        )


def _support(row: pb.CategoryEvaluation) -> int:
    return row.true_positive_count + row.false_negative_count


def _precision(row: pb.CategoryEvaluation) -> float | None:
    return row.precision if row.HasField("precision") else None


def _recall(row: pb.CategoryEvaluation) -> float | None:
    return row.recall if row.HasField("recall") else None


def _markdown(rows: list[pb.CategoryEvaluation]) -> str:
    """The per-category table as Markdown (for the README); the two ``any`` rows in bold."""
    lines = ["| category | support | precision | recall | false positives |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        label = f"**{row.category}**" if row.category.startswith("any ") else row.category
        lines.append(
            f"| {label} | {_support(row)} | {_pct(_precision(row))} | {_pct(_recall(row))} | "
            f"{row.false_positive_count} |"
        )
    return "\n".join(lines)


def _counts_dict(row: pb.CategoryEvaluation) -> dict[str, Any]:
    return {
        "tp": row.true_positive_count,
        "fp": row.false_positive_count,
        "fn": row.false_negative_count,
        "tn": row.true_negative_count,
        "support": _support(row),
        "precision": _precision(row),
        "recall": _recall(row),
    }


def _evaluation_dict(reply: pb.EvaluateBackendResponse) -> dict[str, Any]:
    """The reply in the shape ``eval --json`` has always printed."""
    return {
        "texts": reply.text_count,
        "categories": {row.category: _counts_dict(row) for row in reply.categories},
        "any_flagged": _counts_dict(reply.any_flagged),
        "any_policy": _counts_dict(reply.any_policy),
        "false_alarms_by_kind": dict(reply.false_alarm_counts),
        "kinds": dict(reply.kind_counts),
        "errors": [
            {
                "id": m.id,
                "text": m.text,
                "labels": list(m.labels),
                "flagged": list(m.flagged),
                "missed": list(m.missed),
                "extra": list(m.extra),
            }
            for m in reply.misses
        ],
    }


def register(app: typer.Typer) -> None:
    app.add_typer(moderate_app, name="moderate")
