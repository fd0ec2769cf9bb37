"""The draft's report: ``report.json`` and the answers and items set aside under ``invalid/``.

Written whether the draft passes or not, so a failed draft says what it tried and why it
stopped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talklike.common.paths import atomic_write_text
from talklike.generation.drafting.spec import DraftSpec
from talklike.generation.drafting.state import DraftLog, Plan
from talklike.generation.llm import LlmStats

STEPS = ("persona", "voice", "styles", "topics", "placeholders", "vocabulary", "templates", "questions")


@dataclass(frozen=True)
class DraftFigures:
    """A draft's headline numbers, typed (the summary a caller gets; report.json holds them all)."""

    requested_template_count: int
    template_count: int
    templates_per_style: dict[str, int]
    question_count: int
    placeholder_values: dict[str, int]
    llm_request_count: int
    transport_retry_count: int
    cache_hit_count: int
    malformed_answer_count: int
    rejected_item_count: int
    rejected_by_reason: dict[str, int]

    @property
    def shortfall_count(self) -> int:
        return max(0, self.requested_template_count - self.template_count)


def draft_figures(spec: DraftSpec, plan: Plan, log: DraftLog, stats: LlmStats) -> DraftFigures:
    """The numbers of a draft so far, from its plan, log and call counts."""
    reasons = Counter(r.category for r in log.items)
    return DraftFigures(
        requested_template_count=spec.template_count,
        template_count=sum(len(v) for v in plan.templates.values()),
        templates_per_style={s["id"]: len(plan.templates.get(s["id"], [])) for s in plan.styles},
        question_count=len(plan.questions),
        placeholder_values={name: len(values) for name, values in plan.vocab.items()},
        llm_request_count=stats.requests,
        transport_retry_count=stats.retries,
        cache_hit_count=log.cache_hits,
        malformed_answer_count=log.malformed,
        rejected_item_count=len(log.items),
        rejected_by_reason=dict(reasons.most_common()),
    )


def build_report(
    spec: DraftSpec,
    plan: Plan,
    log: DraftLog,
    stats: LlmStats,
    draft_dir: Path,
    elapsed_s: float,
    status: str,
    problem: str,
    pack_path: Path | None,
) -> dict[str, Any]:
    """report.json's content: the request, what was kept per style, the calls, what was rejected."""
    figures = draft_figures(spec, plan, log, stats)
    return {
        "name": spec.name,
        "status": status,
        "problem": problem,
        "pack_path": str(pack_path) if pack_path else None,
        "draft_dir": str(draft_dir),
        "llm": {
            "base_url": spec.llm.base_url,
            "model": spec.llm.model,
            "temperature": spec.llm.temperature,
            "items_per_call": spec.llm.batch_size,
            "malformed_retries": spec.malformed_retries,
        },
        "requested_templates": figures.requested_template_count,
        "templates": figures.template_count,
        "shortfall": figures.shortfall_count if status == "written" else None,
        "styles": {
            s["id"]: {
                "name": s["name"],
                "requested": plan.quota.get(s["id"], 0),
                "templates": figures.templates_per_style[s["id"]],
                "calls": plan.style_calls.get(s["id"], 0),
            }
            for s in plan.styles
        },
        "questions": figures.question_count,
        "placeholders": figures.placeholder_values,
        "calls": {
            "requests": figures.llm_request_count,
            "transport_retries": figures.transport_retry_count,
            "cache_hits": figures.cache_hit_count,
            "malformed_answers": figures.malformed_answer_count,
            "steps_failed": sum(1 for s in log.steps if not s["ok"]),
            "steps": len(log.steps),
        },
        "rejected": {"count": figures.rejected_item_count, "by_reason": figures.rejected_by_reason},
        "notes": log.notes,
        "samples": log.samples,
        "elapsed_s": round(elapsed_s, 3),
        "steps": log.steps,
    }


def write_report(draft_dir: Path, report: Mapping[str, Any], log: DraftLog) -> Path:
    """report.json and invalid/ in the draft directory; returns the report's path."""
    draft_dir.mkdir(parents=True, exist_ok=True)
    answers = sorted(log.answers, key=lambda a: (_step_order(a["step"]), a["step"], a["attempt"]))
    atomic_write_text(draft_dir / "invalid" / "answers.jsonl", _jsonl(answers))
    atomic_write_text(
        draft_dir / "invalid" / "items.jsonl",
        _jsonl(
            {"step": r.step, "item": r.item, "category": r.category, "reason": r.reason} for r in log.items
        ),
    )
    path = draft_dir / "report.json"
    atomic_write_text(path, json.dumps(dict(report), ensure_ascii=False, indent=2) + "\n")
    return path


def _step_order(label: str) -> int:
    base = label.split("/")[0].split("#")[0]
    return STEPS.index(base) if base in STEPS else len(STEPS)


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)
