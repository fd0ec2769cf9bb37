"""The data of one evaluation run: every question with both answers and their scores."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from talklike.evaluation.scoring import AnswerScores, SideSummary


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
            "notes": self.notes,
        }


def per_style(rows: list[EvalRow]) -> dict[str, dict[str, float]]:
    """Signature and marker rates before and after, per persona style of the held-out answer."""
    groups: dict[str, list[EvalRow]] = {}
    for row in rows:
        groups.setdefault(row.style or "(none)", []).append(row)
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
