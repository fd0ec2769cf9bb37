"""The data of one evaluation run: every question with both answers and their scores."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from talklike.evaluation.metrics import Side, metric_block
from talklike.evaluation.scoring import AnswerScores, SideSummary

#: Where a question comes from: the dataset's held-out templates, or the pack's freeform.yaml.
SOURCES = ("template", "freeform")


@dataclass
class EvalRow:
    """One held-out question, the base model's answer (before) and the adapter's (after)."""

    index: int
    question: str
    style: str
    topic: str
    reference: str
    before: str
    after: str
    before_scores: AnswerScores
    after_scores: AnswerScores
    #: Pairwise judge verdict: "after", "before", "tie", or "" when no judge ran.
    judge: str = ""
    #: "template" (heldout.jsonl) or "freeform" (the pack's freeform.yaml).
    source: str = "template"
    #: (total log-prob, token count) of the reference answer under each model; None without a reference.
    scored_before: tuple[float, int] | None = None
    scored_after: tuple[float, int] | None = None


@dataclass
class EvalResult:
    """A whole run: settings, rows and the aggregates the report leads with."""

    run: str
    adapter: str
    base_model: str
    language: str
    signature: str
    sampling: dict[str, Any]
    rows: list[EvalRow]
    before: SideSummary
    after: SideSummary
    perplexity_before: float | None = None
    perplexity_after: float | None = None
    judge: dict[str, Any] | None = None
    created_at: str = ""
    wall_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @functools.cached_property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """Every metric with intervals and paired tests: "overall" and one block per source present."""
        return source_blocks(self.rows)

    def summary_dict(self) -> dict[str, Any]:
        """What ``summary.json`` holds: everything but the rows."""
        return {
            "run": self.run,
            "adapter": self.adapter,
            "base_model": self.base_model,
            "language": self.language,
            "signature": self.signature,
            "created_at": self.created_at,
            "wall_time_s": round(self.wall_time_s, 2),
            "questions": len(self.rows),
            "sampling": self.sampling,
            "before": dataclasses.asdict(self.before),
            "after": dataclasses.asdict(self.after),
            "perplexity": {"before": self.perplexity_before, "after": self.perplexity_after},
            "judge": self.judge,
            "per_style": per_style(self.rows),
            "sources": {source: sum(r.source == source for r in self.rows) for source in self.sources},
            "metrics": self.metrics,
            "notes": self.notes,
        }

    @property
    def sources(self) -> list[str]:
        return sources_of(self.rows)


def sources_of(rows: list[EvalRow]) -> list[str]:
    """The question sources present in ``rows``, in the order of ``SOURCES``."""
    present = {r.source for r in rows}
    return [s for s in SOURCES if s in present] + sorted(present - set(SOURCES))


def sides(rows: list[EvalRow]) -> tuple[Side, Side]:
    """The before and after sides of ``rows`` as the metrics read them."""
    with_reference = [r for r in rows if r.scored_before is not None and r.scored_after is not None]
    before = Side(
        [r.before for r in rows],
        [r.before_scores for r in rows],
        [r.scored_before for r in with_reference if r.scored_before is not None],
    )
    after = Side(
        [r.after for r in rows],
        [r.after_scores for r in rows],
        [r.scored_after for r in with_reference if r.scored_after is not None],
    )
    return before, after


def source_blocks(rows: list[EvalRow]) -> dict[str, dict[str, Any]]:
    """``{"overall": block, "template": block, "freeform": block}`` for the sources present."""
    blocks = {"overall": metric_block(*sides(rows))}
    for source in sources_of(rows):
        blocks[source] = metric_block(*sides([r for r in rows if r.source == source]))
    return blocks


def per_style(rows: list[EvalRow]) -> dict[str, dict[str, float]]:
    """Signature and marker rates before and after, per persona style of the held-out answer.

    Free-form questions have no held-out answer, so no style: they form their own group, named
    for what they are; a template question without a style (a held-out file without metadata)
    goes under "(no style)".
    """
    groups: dict[str, list[EvalRow]] = {}
    for row in rows:
        label = row.style or ("free-form" if row.source == "freeform" else "(no style)")
        groups.setdefault(label, []).append(row)
    out: dict[str, dict[str, float]] = {}
    for style, members in sorted(groups.items()):
        n = len(members)
        out[style] = {
            "questions": n,
            "signature_before": sum(r.before_scores.has_signature for r in members) / n,
            "signature_after": sum(r.after_scores.has_signature for r in members) / n,
            "marker_before": sum(r.before_scores.marker_count > 0 for r in members) / n,
            "marker_after": sum(r.after_scores.marker_count > 0 for r in members) / n,
        }
    return out
