"""Compare the "after" side of two evaluation runs (``talklike eval compare A B``).

Each run's summary.json carries every metric with its counts and 95 % interval, so two
reports can be compared without the service or the answers. A difference is called
significant
- for a rate (a share of answers), when the pooled two-proportion z-test on the two runs'
  counts gives p < 0.05. The two runs usually answer the same questions, so their answers are
  positively correlated; the independent-samples test then overstates the variance of the
  difference, which makes it conservative: what it calls significant is;
- for a mean or perplexity, when the two runs' 95 % bootstrap intervals do not overlap. Only
  the intervals are in summary.json, and non-overlap is the conservative reading of them (two
  equal-width intervals just apart correspond to p ≈ 0.006);
- never for a statistic of the whole answer set (distinct-2): it has no interval.
A metric got worse when the difference is significant and goes against its direction (a
higher loop rate, a lower signature rate); ``--fail-on`` turns that into a non-zero exit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talklike.common.errors import InvalidArgument
from talklike.evaluation.metrics import ALPHA, BY_KEY, MEAN, METRICS, PERPLEXITY, RATE, Metric
from talklike.evaluation.stats import rounded_p, two_proportion_p


def read_summary(report: Path, field: str = "report") -> dict[str, Any]:
    """summary.json of a report directory (or the file itself); InvalidArgument naming ``field`` otherwise."""
    path = report / "summary.json" if report.is_dir() else report
    if not path.is_file():
        raise InvalidArgument(field, f"{report} is neither a report directory nor its summary.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(field, f"{path} is not JSON ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise InvalidArgument(
            field, f"{path} has no per-metric intervals (`metrics`): it was written before they existed"
        )
    return data


@dataclass(frozen=True)
class Difference:
    """One metric of run B's "after" side against run A's."""

    metric: Metric
    a: dict[str, Any]
    b: dict[str, Any]
    #: b − a; None when either value is missing (no perplexity without reference answers).
    difference: float | None
    #: The two-proportion test's p-value (rates only).
    p_value: float | None
    significant: bool
    #: "better", "worse", or "" (not significant, or a metric with no better direction).
    verdict: str


def _overlap(a: list[float] | None, b: list[float] | None) -> bool:
    return not a or not b or (a[0] <= b[1] and b[0] <= a[1])


def difference(metric: Metric, a: dict[str, Any], b: dict[str, Any]) -> Difference:
    """Compare one metric's "after" entries of run A (``a``) and run B (``b``)."""
    if a.get("value") is None or b.get("value") is None:
        return Difference(metric, a, b, None, None, False, "")
    diff = float(b["value"]) - float(a["value"])
    p_value = None
    if metric.kind == RATE:
        p_value = rounded_p(two_proportion_p(int(a["count"]), int(a["n"]), int(b["count"]), int(b["n"])))
        significant = p_value < ALPHA
    elif metric.kind in {PERPLEXITY, MEAN}:
        significant = not _overlap(a.get("ci"), b.get("ci"))
    else:
        significant = False
    verdict = ""
    if significant and metric.better and diff:
        verdict = "better" if (diff > 0) == (metric.better == "higher") else "worse"
    return Difference(metric, a, b, diff, p_value, significant, verdict)


def compare(a: dict[str, Any], b: dict[str, Any], block: str = "overall") -> list[Difference]:
    """Every metric both summaries have in ``block`` ("overall", "template", "freeform")."""
    blocks = []
    for name, summary in (("report_a", a), ("report_b", b)):
        if block not in summary["metrics"]:
            have = ", ".join(sorted(summary["metrics"]))
            raise InvalidArgument(name, f"has no {block!r} results (it has: {have})")
        blocks.append(summary["metrics"][block])
    return [
        difference(metric, blocks[0][metric.key]["after"], blocks[1][metric.key]["after"])
        for metric in METRICS
        if metric.key in blocks[0] and metric.key in blocks[1]
    ]


def check_fail_on(names: list[str]) -> list[str]:
    """The ``--fail-on`` metric keys, each known and with a better direction; InvalidArgument otherwise."""
    for name in names:
        metric = BY_KEY.get(name)
        if metric is None:
            raise InvalidArgument("fail_on", f"unknown metric {name!r}; known: {', '.join(BY_KEY)}")
        if not metric.better:
            raise InvalidArgument("fail_on", f"{name} has no better direction, so it cannot get worse")
    return names


def worse(differences: list[Difference], fail_on: list[str]) -> list[Difference]:
    """The ``fail_on`` metrics that got significantly worse."""
    return [d for d in differences if d.metric.key in fail_on and d.verdict == "worse"]
