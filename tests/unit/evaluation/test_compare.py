"""``talklike eval compare`` on two hand-made summary.json files: significance and --fail-on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from talklike.cli.main import app
from talklike.common.errors import InvalidArgument
from talklike.evaluation.compare import compare, read_summary
from typer.testing import CliRunner


def rate(count: int, n: int, ci: list[float]) -> dict[str, Any]:
    return {"value": round(count / n, 4), "count": count, "n": n, "ci": ci}


def entry(after: dict[str, Any], label: str, kind: str, better: str) -> dict[str, Any]:
    return {"label": label, "kind": kind, "better": better, "before": after, "after": after}


def summary(
    run: str,
    loops: int,
    signatures: int,
    share_ci: list[float],
    ppl_ci: list[float],
    words_ci: tuple[float, float] = (29.0, 31.0),
) -> dict[str, Any]:
    overall = {
        "questions": 60,
        "loop_rate": entry(rate(loops, 60, [0.0, 1.0]), "loops", "rate", "lower"),
        "signature_rate": entry(rate(signatures, 60, [0.0, 1.0]), "signature", "rate", "higher"),
        "mean_real_word_share": entry(
            {"value": sum(share_ci) / 2, "n": 60, "ci": share_ci}, "real-word share", "mean", "higher"
        ),
        "mean_words": entry(
            {"value": sum(words_ci) / 2, "n": 60, "ci": list(words_ci)}, "length", "mean", ""
        ),
        "distinct_2": entry({"value": 0.5, "n": 60, "ci": None}, "distinct-2", "set", "higher"),
        "perplexity": entry(
            {"value": sum(ppl_ci) / 2, "n": 60, "ci": ppl_ci}, "perplexity", "perplexity", "lower"
        ),
    }
    return {"run": run, "metrics": {"overall": overall}}


@pytest.fixture(name="reports")
def reports_fixture(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "a"
    a.mkdir()
    (a / "summary.json").write_text(json.dumps(summary("a", 3, 60, [0.97, 0.99], [8.0, 9.0])))
    b = tmp_path / "b.json"
    b.write_text(json.dumps(summary("bb", 15, 58, [0.80, 0.88], [8.5, 9.5], (40.0, 44.0))))
    return a, b


def test_differences_and_their_significance(reports: tuple[Path, Path]) -> None:
    a, b = (read_summary(path) for path in reports)
    by_key = {d.metric.key: d for d in compare(a, b)}
    loops = by_key["loop_rate"]
    # 3/60 vs 15/60: pooled 0.15, SE = √(0.15·0.85·2/60) = 0.06519, z = 0.2/0.06519 = 3.068
    assert loops.p_value == pytest.approx(0.00216, abs=1e-5)
    assert (loops.significant, loops.verdict, loops.difference) == (True, "worse", pytest.approx(0.2))
    sig = by_key["signature_rate"]  # 60/60 vs 58/60: z = 1.426, p = 0.154
    assert sig.p_value == pytest.approx(0.154, abs=1e-3) and not sig.significant and sig.verdict == ""
    assert by_key["mean_real_word_share"].verdict == "worse"  # [0.97, 0.99] and [0.80, 0.88] are apart
    assert not by_key["perplexity"].significant  # [8.0, 9.0] and [8.5, 9.5] overlap
    words = by_key["mean_words"]  # intervals apart, but length has no better direction
    assert words.significant and words.verdict == ""
    assert not by_key["distinct_2"].significant


def test_bad_reports_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="neither a report directory"):
        read_summary(tmp_path / "missing")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"run": "x", "before": {}}))
    with pytest.raises(InvalidArgument, match="no per-metric intervals"):
        read_summary(old)
    with pytest.raises(InvalidArgument, match="has no 'freeform' results"):
        compare(summary("a", 0, 0, [0, 1], [1, 2]), summary("b", 0, 0, [0, 1], [1, 2]), "freeform")


def test_cli_table_json_and_fail_on(reports: tuple[Path, Path]) -> None:
    runner = CliRunner()
    a, b = (str(path) for path in reports)
    shown = runner.invoke(app, ["eval", "compare", a, b, "--fail-on", "signature_rate"])
    assert shown.exit_code == 0, shown.output
    assert "loop_rate" in shown.output and "worse" in shown.output and "p=0.002" in shown.output
    failing = runner.invoke(
        app, ["eval", "compare", a, b, "--fail-on", "signature_rate", "--fail-on", "loop_rate"]
    )
    assert failing.exit_code == 1 and "significantly worse in B: loop_rate" in failing.output
    as_json = runner.invoke(app, ["eval", "compare", a, b, "--json"])
    data = json.loads(as_json.output)
    assert data["metrics"]["loop_rate"]["verdict"] == "worse" and data["failed"] == []
    reverse = runner.invoke(app, ["eval", "compare", b, a, "--fail-on", "loop_rate"])
    assert reverse.exit_code == 0  # fewer loops is better, not worse
    for bad, needle in (("mean_words", "no better direction"), ("bogus", "unknown metric")):
        refused = runner.invoke(app, ["eval", "compare", a, b, "--fail-on", bad])
        assert refused.exit_code == 1 and needle in refused.output
