"""The report's files hold every question, both answers and their scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from openpyxl import load_workbook
from talklike.evaluation.report import histogram_bins, write_report
from talklike.evaluation.results import EvalResult, EvalRow
from talklike.evaluation.scoring import AnswerScorer, PersonaLexicon, summarize

LEXICON = PersonaLexicon.build("Andrej Babiš", "cs", ["Brusel", "kampaň", "makal jsem"])


def make_result() -> EvalResult:
    scorer = AnswerScorer(LEXICON)
    questions = [("Jak hodnotíte inflaci?", "emotivni"), ("Co říkáte na <Brusel> & spol.?", "ironie")]
    rows = []
    for i, (question, style) in enumerate(questions, start=1):
        before = "Inflation is a complex topic."
        after = f"Kampaň! Brusel krade, já jsem makal jsem. ({i})\x17\nAndrej Babiš"  # \x17: xlsx-illegal
        rows.append(
            EvalRow(
                index=i,
                question=question,
                style=style,
                topic="inflace",
                reference="To je kampaň!\nAndrej Babiš",
                before=before,
                after=after,
                before_scores=scorer.score(before),
                after_scores=scorer.score(after),
                judge="after",
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
    assert [r["signature_after"] for r in rows] == ["1", "1"]

    book = load_workbook(paths["xlsx"])
    assert book.sheetnames == ["results", "summary"]
    results = list(book["results"].iter_rows(values_only=True))
    assert len(results) == 1 + len(result.rows)
    summary = {row[0]: row[1:] for row in book["summary"].iter_rows(values_only=True) if row and row[0]}
    assert summary["signature rate"] == (0.0, 1.0)
    assert summary["held-out perplexity"] == (40.0, 6.5)

    data = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert data["questions"] == 2
    assert data["after"]["signature_rate"] == 1.0
    assert set(data["per_style"]) == {"emotivni", "ironie"}

    page = paths["html"].read_text(encoding="utf-8")
    assert page.count("<img ") == 3
    assert 'id="results"' in page and 'id="summary"' in page
    assert "&lt;Brusel&gt; &amp; spol." in page  # user text is escaped, never raw HTML
    assert "<tr><td>signature rate</td><td>0%</td><td>100%</td></tr>" in page  # shares in percent
    assert "<tr><td>held-out perplexity</td><td>40.00</td><td>6.50</td></tr>" in page


def test_histogram_bins_fit_the_values() -> None:
    assert histogram_bins([0, 0, 0], is_share=False) == [-0.5, 0.5]  # one bar at 0, no made-up spread
    assert histogram_bins([0, 2, 1], is_share=False) == [-0.5, 0.5, 1.5, 2.5]  # a bar per count
    assert histogram_bins([0.93, 1.0], is_share=True) == [i / 10 for i in range(11)]
    wide = histogram_bins([5, 61], is_share=False)
    assert wide[0] == 5 and wide[-1] >= 61 and len(wide) <= 12
