"""Moderating a chat JSONL dataset: every line kept, removed or quarantined — never lost.

Lines are parsed and checked with the same rules as the generation service's validation
(OpenAI's chat format); a line that is not valid UTF-8, JSON or a chat example goes to
``quarantine/lines.jsonl`` with its line number, reasons and raw text. The turns of the
policy's roles are scored — each distinct text once, so a system prompt shared by 3,000
examples costs one classification (and one OpenAI input, not 3,000). An example's score in
a category is its worst turn's; it violates the policy when a score reaches the category's
threshold. Under ``drop`` it goes to ``removed.jsonl`` with its scores and reasons, under
``annotate`` it stays in the moderated file and is listed in ``flagged.jsonl``. Kept lines
are written byte for byte. ``report.json`` and ``report.md`` close the run; the invariant
kept + removed + quarantined = lines read is checked before anything is reported.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from talklike.common.chat_data import folders
from talklike.common.chat_data.jsonl import BOM, BadLine, Problem, check_record, parse_line, quarantine_record
from talklike.common.paths import atomic_write_text, atomic_writer
from talklike.moderation.backends import Backend
from talklike.moderation.categories import CATEGORIES, Scores
from talklike.moderation.policy import Policy, Preflight, preflight
from talklike.moderation.report import render_markdown

#: report.json carries this key, so a rerun may replace a directory this service wrote.
MARKER = "talklike_moderation"
MODERATED = "moderated.jsonl"
QUARANTINE = "quarantine/lines.jsonl"
#: Texts per backend call: progress is reported after each.
CHUNK = 512
#: Characters of a turn shown in the reports.
SNIPPET = 240

ProgressCallback = Callable[[str, int, int], Awaitable[None]]


@dataclass
class Example:
    """A valid line and what the moderation found in it."""

    line_number: int
    raw: bytes
    messages: list[dict[str, Any]]
    #: (message index, role, text) of the turns checked.
    turns: list[tuple[int, str, str]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    backend_flags: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_score(self) -> float:
        return max(self.scores.values(), default=0.0)


@dataclass
class DatasetRun:
    """The outcome of one run: counts, files, pre-flight checks and the report."""

    out_dir: Path
    paths: dict[str, Path]
    lines: int
    kept: int
    removed: int
    quarantined: int
    flagged: int
    texts: int
    bad: list[BadLine]
    category_stats: list[CategoryStat]
    input_preflight: Preflight
    output_preflight: Preflight
    #: The backend and model that scored the texts, and the policy's action (drop or annotate).
    backend: str
    model: str
    action: str
    #: report.json's content, as written.
    report: dict[str, Any]
    elapsed_s: float


def check_replaceable(out_dir: Path) -> None:
    """AlreadyExists when ``out_dir`` holds files this service did not write (they are not replaced)."""
    folders.check_replaceable(out_dir, "report.json", MARKER, "a moderation output")


def read_lines(
    lines: Iterable[tuple[int, bytes]], roles: Sequence[str]
) -> tuple[int, list[Example], list[BadLine], list[str]]:
    """(lines read, valid examples with the turns to check, quarantined lines, warnings)."""
    examples: list[Example] = []
    bad: list[BadLine] = []
    warnings: list[str] = []
    count = 0
    for number, raw in lines:
        count = number
        body = raw
        if number == 1 and body.startswith(BOM):
            body = body[len(BOM) :]
            warnings.append("the file starts with a UTF-8 byte order mark; it was ignored")
        record, problems = parse_line(body)
        if record is not None and not problems:
            problems = check_record(record)
        if problems:
            bad.append(
                BadLine(number, raw, tuple(Problem(number, reason, where) for where, reason in problems))
            )
            continue
        example = Example(number, body, record["messages"])
        example.turns = [
            (i, m["role"], m["content"]) for i, m in enumerate(example.messages) if m["role"] in roles
        ]
        examples.append(example)
    if count == 0:
        warnings.append("the file is empty")
    return count, examples, bad, warnings


async def score_texts(
    backend: Backend, texts: Sequence[str], on_progress: ProgressCallback | None
) -> dict[str, Scores]:
    """Each distinct text scored once, in chunks, with progress after each chunk."""
    out: dict[str, Scores] = {}
    total = len(texts)
    if on_progress is not None:
        await on_progress("moderate", 0, total)
    for start in range(0, total, CHUNK):
        chunk = texts[start : start + CHUNK]
        for text, scores in zip(chunk, await backend.classify(chunk), strict=True):
            out[text] = scores
        if on_progress is not None:
            await on_progress("moderate", min(start + CHUNK, total), total)
    return out


def judge(example: Example, scored: dict[str, Scores], policy: Policy) -> None:
    """Fill the example's scores (worst turn per category), violations and per-turn details."""
    worst = dict.fromkeys(CATEGORIES, 0.0)
    for index, role, text in example.turns:
        result = scored[text]
        for name in CATEGORIES:
            worst[name] = max(worst[name], result.scores[name])
        example.backend_flags.update(name for name, flag in result.flags.items() if flag)
        violations = result.violations(policy.thresholds)
        if any(result.scores[name] > 0 for name in CATEGORIES):
            example.details.append(
                {
                    "index": index,
                    "role": role,
                    "violations": violations,
                    "flagged": sorted(name for name, flag in result.flags.items() if flag),
                    "scores": {name: result.scores[name] for name in CATEGORIES if result.scores[name] > 0},
                    "reasons": list(result.reasons),
                    "text": text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…",
                }
            )
    example.scores = worst
    example.violations = [name for name in CATEGORIES if worst[name] >= policy.thresholds[name]]


def flagged_record(example: Example) -> dict[str, Any]:
    """A line of removed.jsonl / flagged.jsonl: where it was, why, the scores and the example itself."""
    return {
        "line_number": example.line_number,
        "violations": example.violations,
        "backend_flagged": sorted(example.backend_flags),
        "max_score": round(example.max_score, 4),
        "scores": {name: round(score, 4) for name, score in example.scores.items() if score > 0},
        "turns": example.details,
        "example": {"messages": example.messages},
    }


@dataclass(frozen=True)
class CategoryStat:
    """One category over a run: its threshold, the examples over it, those the backend flagged, the scores."""

    category: str
    threshold: float
    violations: int
    backend_flagged: int
    max_score: float
    mean_score: float

    def as_dict(self) -> dict[str, Any]:
        """The row of report.json's ``categories``."""
        return asdict(self)


def category_stats(examples: Sequence[Example], policy: Policy) -> list[CategoryStat]:
    """Per category: threshold, violating examples, backend-flagged examples, max and mean score."""
    count = len(examples)
    out = []
    for name in CATEGORIES:
        scores = [e.scores[name] for e in examples]
        out.append(
            CategoryStat(
                category=name,
                threshold=policy.thresholds[name],
                violations=sum(1 for e in examples if name in e.violations),
                backend_flagged=sum(1 for e in examples if name in e.backend_flags),
                max_score=round(max(scores, default=0.0), 4),
                mean_score=round(sum(scores) / count, 6) if count else 0.0,
            )
        )
    return out


def worst_examples(examples: Sequence[Example], limit: int) -> list[dict[str, Any]]:
    """The ``limit`` examples with the highest score, violating or not (none scoring 0)."""
    ranked = sorted((e for e in examples if e.max_score > 0), key=lambda e: (-e.max_score, e.line_number))
    out = []
    for e in ranked[:limit]:
        top = max(CATEGORIES, key=lambda name: e.scores[name])
        turn = max(e.details, key=lambda d: d["scores"].get(top, 0.0), default=None)
        text = turn["text"] if turn else next((t for _, _, t in e.turns), "")
        out.append(
            {
                "line_number": e.line_number,
                "max_score": round(e.max_score, 4),
                "top_category": top,
                "violations": e.violations,
                "role": turn["role"] if turn else "",
                "text": text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…",
                "reasons": turn["reasons"] if turn else [],
            }
        )
    return out


async def moderate_dataset(
    lines: Iterable[tuple[int, bytes]],
    *,
    file_name: str,
    out_dir: Path,
    backend: Backend,
    policy: Policy,
    worst_count: int = 10,
    on_progress: ProgressCallback | None = None,
) -> DatasetRun:
    """Read, score, judge and write; the whole run for one file."""
    started = time.monotonic()
    check_replaceable(out_dir)
    # Every line is read before anything is written: the input may lie inside out_dir.
    line_count, examples, bad, warnings = await asyncio.to_thread(read_lines, lines, policy.roles)
    if on_progress is not None:
        await on_progress("read", line_count, line_count)
    distinct = list(dict.fromkeys(text for e in examples for _, _, text in e.turns))
    scored = await score_texts(backend, distinct, on_progress)
    for example in examples:
        judge(example, scored, policy)
    violating = [e for e in examples if e.violations]
    kept = examples if policy.action == "annotate" else [e for e in examples if not e.violations]
    removed = [] if policy.action == "annotate" else violating
    if len(kept) + len(removed) + len(bad) != line_count:  # pragma: no cover - a bug, never a user error
        raise AssertionError(
            f"moderation lost lines: {len(kept)} kept + {len(removed)} removed + {len(bad)} quarantined "
            f"!= {line_count} read"
        )
    if on_progress is not None:
        await on_progress("write", 0, 4)
    flagged_name = "flagged.jsonl" if policy.action == "annotate" else "removed.jsonl"
    paths = {
        "moderated": out_dir / MODERATED,
        "flagged": out_dir / flagged_name,
        "quarantine": out_dir / QUARANTINE,
        "report_json": out_dir / "report.json",
        "report_markdown": out_dir / "report.md",
    }
    # A rerun with the other action must not leave the previous run's list of flagged examples behind.
    (out_dir / ("removed.jsonl" if policy.action == "annotate" else "flagged.jsonl")).unlink(missing_ok=True)
    with atomic_writer(paths["moderated"], "wb") as handle:
        for example in kept:
            handle.write(example.raw + b"\n")
    with atomic_writer(paths["flagged"]) as handle:
        for example in violating:
            handle.write(json.dumps(flagged_record(example), ensure_ascii=False) + "\n")
    with atomic_writer(paths["quarantine"]) as handle:
        for line in bad:
            handle.write(json.dumps(quarantine_record(line), ensure_ascii=False) + "\n")
    if on_progress is not None:
        await on_progress("write", 3, 4)
    kept_flagged = sum(1 for e in kept if e.violations)
    input_check = preflight(
        len(examples), len(violating), policy, output=False, kept_flagged=kept_flagged, out_name=MODERATED
    )
    output_check = preflight(
        len(kept), kept_flagged, policy, output=True, kept_flagged=kept_flagged, out_name=MODERATED
    )
    stats = category_stats(examples, policy)
    elapsed = time.monotonic() - started
    report: dict[str, Any] = {
        MARKER: 1,
        "file": file_name,
        "backend": backend.name,
        "model": backend.model,
        "policy": policy.as_dict(),
        "counts": {
            "lines": line_count,
            "examples": len(examples),
            "kept": len(kept),
            "removed": len(removed),
            "quarantined": len(bad),
            "flagged": len(violating),
            "backend_flagged": sum(1 for e in examples if e.backend_flags),
            "flagged_share": round(len(violating) / len(examples), 6) if examples else 0.0,
            "texts_scored": len(distinct),
            "turns_checked": sum(len(e.turns) for e in examples),
        },
        "invariant": f"kept {len(kept)} + removed {len(removed)} + quarantined {len(bad)} = lines {line_count}",
        "preflight": {"input": input_check.as_dict(), "output": output_check.as_dict()},
        "categories": [row.as_dict() for row in stats],
        "worst_examples": worst_examples(examples, worst_count),
        "quarantined": [
            {"line_number": p.line_number, "field_path": p.field_path, "reason": p.reason}
            for line in bad
            for p in line.problems
        ],
        "warnings": warnings,
        "files": {
            name: path.name if path.parent == out_dir else str(path.relative_to(out_dir))
            for name, path in paths.items()
        },
        "elapsed_s": round(elapsed, 3),
    }
    with atomic_writer(paths["report_json"]) as handle:
        json.dump(report, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
    atomic_write_text(paths["report_markdown"], render_markdown(report))
    if on_progress is not None:
        await on_progress("write", 4, 4)
    return DatasetRun(
        out_dir=out_dir,
        paths=paths,
        lines=line_count,
        kept=len(kept),
        removed=len(removed),
        quarantined=len(bad),
        flagged=len(violating),
        texts=len(distinct),
        bad=bad,
        category_stats=stats,
        input_preflight=input_check,
        output_preflight=output_check,
        backend=backend.name,
        model=backend.model,
        action=policy.action,
        report=report,
        elapsed_s=elapsed,
    )
