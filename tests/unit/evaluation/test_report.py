"""The report's files hold every question, both answers and their scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from openpyxl import load_workbook
from talklike.evaluation.metrics import METRICS
from talklike.evaluation.report import COLUMNS, histogram_bins, write_report
from talklike.evaluation.results import EvalResult, EvalRow
from talklike.evaluation.scoring import AnswerScorer, PersonaLexicon, summarize

LEXICON = PersonaLexicon.build(
    "Andrej Babiš", "cs", ["Brusel", "kampaň", "makal jsem"], {"inflace": ("inflaci",)}
)


def make_result() -> EvalResult:
    scorer = AnswerScorer(LEXICON)
    questions = [
        ("Jak hodnotíte inflaci?", "emotivni", "template"),
        ("Co říkáte na <Brusel> & spol.?", "ironie", "template"),
        ("Kdy skončí zdražování?", "", "freeform"),
    ]
    rows = []
    for i, (question, style, source) in enumerate(questions, start=1):
        before = "Inflation is a complex topic."
        after = f"Kampaň! Brusel krade, já jsem makal jsem. ({i})\x17\nAndrej Babiš"  # \x17: xlsx-illegal
        if source == "freeform":
            after = "Válka! Válka! Válka! Válka! Válka! Válka!\nAndrej Babiš"
        reference = "" if source == "freeform" else "To je kampaň!\nAndrej Babiš"
        rows.append(
            EvalRow(
                index=i,
                question=question,
                style=style,
                topic="inflace",
                reference=reference,
                before=before,
                after=after,
                before_scores=scorer.score(before, question, "inflace"),
                after_scores=scorer.score(after, question, "inflace"),
                judge="after",
                source=source,
                scored_before=(-40.0, 10) if reference else None,
                scored_after=(-20.0, 10) if reference else None,
            )
        )
    return EvalResult(
        run="r1",
        adapter="babis",
        base_model="tiny",
        language="cs",
        signature="Andrej Babiš",
        sampling={"temperature": 0.0, "max_new_tokens": 64, "seed": 7},
        rows=rows,
        before=summarize([r.before for r in rows], [r.before_scores for r in rows]),
        after=summarize([r.after for r in rows], [r.after_scores for r in rows]),
        perplexity_before=40.0,
        perplexity_after=6.5,
        created_at="2026-11-25T07:00:00Z",
    )


def test_report_files_hold_every_row_and_the_summary(tmp_path: Path) -> None:
    result = make_result()
    paths = write_report(result, tmp_path / "report")

    with paths["csv"].open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["question"] for r in rows] == [r.question for r in result.rows]
    assert all(r["answer_before"] and r["answer_after"] for r in rows)
    assert [r["signature_after"] for r in rows] == ["1", "1", "1"]
    assert [r["source"] for r in rows] == ["template", "template", "freeform"]
    assert [r["loop_after"] for r in rows] == ["0", "0", "1"]
    assert rows[2]["loop_why_after"] == "“válka válka válka válka” ×3"
    assert [r["not_language_before"] for r in rows] == ["1", "1", "1"]  # English
    assert rows[0]["real_words_after"] == "1.0" and rows[0]["opening_after"] == "kampaň brusel krade"
    assert [r["relevant_after"] for r in rows] == ["0", "1", "0"]  # only "Brusel" takes up its question
    assert rows[0]["unknown_words_before"]  # English words are listed as not Czech

    book = load_workbook(paths["xlsx"])
    assert book.sheetnames == ["results", "summary"]
    results = list(book["results"].iter_rows(values_only=True))
    assert len(results) == 1 + len(result.rows)
    assert results[0] == tuple(name for name, _ in COLUMNS)
    summary = {
        (row[0], row[1]): row[2:] for row in book["summary"].iter_rows(values_only=True) if row and row[1]
    }
    # before, low, high, after, low, high, test, p
    assert summary["signature", "all questions"][:8] == (
        0.0,
        0.0,
        0.5615,
        1.0,
        0.4385,
        1.0,
        "exact McNemar",
        0.25,
    )
    assert summary["loops", "free-form"][3] == 1.0
    assert summary["held-out perplexity", "template-held-out"][0] == pytest.approx(54.598, abs=1e-3)  # e⁴
    assert summary["held-out perplexity", "free-form"][0] is None  # no references

    data = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert data["questions"] == 3 and data["sources"] == {"template": 2, "freeform": 1}
    assert data["after"]["signature_rate"] == 1.0
    assert set(data["per_style"]) == {"emotivni", "ironie", "free-form"}
    assert set(data["metrics"]) == {"overall", "template", "freeform"}
    loops = data["metrics"]["overall"]["loop_rate"]
    assert loops["after"] == {"value": 0.3333, "count": 1, "n": 3, "ci": [0.0615, 0.7923]}
    assert loops["test"] == "exact McNemar" and loops["p_value"] == 1.0

    page = paths["html"].read_text(encoding="utf-8")
    assert page.count("<img ") == 3
    assert 'id="results"' in page and 'id="summary"' in page
    assert "&lt;Brusel&gt; &amp; spol." in page  # user text is escaped, never raw HTML
    assert '<th class="group" colspan="3">free-form (1 questions)</th>' in page  # sources side by side
    assert '0%<span class="ci">[0% – 56%]</span>' in page  # a rate with its interval
    assert page.count('class="badge loop"') == 1 and page.count('class="answer loop"') == 1
    assert page.count('class="badge notlang"') == 3  # the English before-answers
    for metric in METRICS:  # every metric explained
        assert f"<dt>{metric.label}" in page


def test_histogram_bins_fit_the_values() -> None:
    assert histogram_bins([0, 0, 0], is_share=False) == [-0.5, 0.5]  # one bar at 0, no made-up spread
    assert histogram_bins([0, 2, 1], is_share=False) == [-0.5, 0.5, 1.5, 2.5]  # a bar per count
    assert histogram_bins([0.93, 1.0], is_share=True) == [i / 10 for i in range(11)]
    wide = histogram_bins([5, 61], is_share=False)
    assert wide[0] == 5 and wide[-1] >= 61 and len(wide) <= 12
