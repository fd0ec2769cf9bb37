"""Write an evaluation run as files people open: a spreadsheet, CSV, JSON and an HTML page.

The assignment's deliverable is "a table with all the answers and their scores"; the HTML
page adds charts so the difference before vs after is visible at a glance, and embeds them
(data URIs) so the page is one self-contained file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from talklike.common.paths import atomic_write_bytes, atomic_write_text, atomic_writer
from talklike.evaluation.results import EvalResult, EvalRow, per_style

BEFORE_COLOR = "#8a94a6"
AFTER_COLOR = "#d1495b"

#: Column name → how to read it from a row; one list serves the CSV, the sheet and the HTML table.
COLUMNS: list[tuple[str, Callable[[EvalRow], Any]]] = [
    ("#", lambda r: r.index),
    ("style", lambda r: r.style),
    ("topic", lambda r: r.topic),
    ("question", lambda r: r.question),
    ("answer_before", lambda r: r.before),
    ("answer_after", lambda r: r.after),
    ("signature_before", lambda r: int(r.before_scores.has_signature)),
    ("signature_after", lambda r: int(r.after_scores.has_signature)),
    ("markers_before", lambda r: r.before_scores.marker_count),
    ("markers_after", lambda r: r.after_scores.marker_count),
    ("language_share_before", lambda r: r.before_scores.language_share),
    ("language_share_after", lambda r: r.after_scores.language_share),
    ("words_before", lambda r: r.before_scores.words),
    ("words_after", lambda r: r.after_scores.words),
    ("markers_found_after", lambda r: ", ".join(r.after_scores.markers_found)),
    ("judge", lambda r: r.judge),
    ("reference_answer", lambda r: r.reference),
]

SUMMARY_METRICS: list[tuple[str, str]] = [
    ("signature_rate", "signature rate"),
    ("marker_rate", "persona marker rate"),
    ("markers_per_answer", "markers per answer"),
    ("language_rate", "answers in the persona's language"),
    ("mean_language_share", "mean language share"),
    ("mean_words", "mean length (words)"),
    ("distinct_1", "distinct-1"),
    ("distinct_2", "distinct-2"),
]
#: Shown as percentages on the page (the spreadsheet keeps the plain numbers for formulas).
SHARES = {"signature rate", "persona marker rate", "answers in the persona's language", "mean language share"}


def write_report(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    """Write results.csv, results.xlsx, summary.json and report.html into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / "results.csv",
        "xlsx": out_dir / "results.xlsx",
        "summary": out_dir / "summary.json",
        "html": out_dir / "report.html",
    }
    write_csv(result, paths["csv"])
    write_xlsx(result, paths["xlsx"])
    atomic_write_text(paths["summary"], json.dumps(result.summary_dict(), ensure_ascii=False, indent=2))
    atomic_write_text(paths["html"], render_html(result))
    return paths


def write_csv(result: EvalResult, path: Path) -> None:
    """Every row with both answers and their scores, UTF-8 with a BOM so spreadsheets read the accents."""
    with atomic_writer(path, "w", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow([name for name, _ in COLUMNS])
        for row in result.rows:
            writer.writerow([get(row) for _, get in COLUMNS])


def summary_rows(result: EvalResult) -> list[tuple[str, Any, Any]]:
    """(metric, before, after) rows shared by the summary sheet and the HTML page."""
    rows: list[tuple[str, Any, Any]] = [
        (label, round(getattr(result.before, key), 4), round(getattr(result.after, key), 4))
        for key, label in SUMMARY_METRICS
    ]
    if result.perplexity_before is not None and result.perplexity_after is not None:
        rows.append(
            ("held-out perplexity", _round(result.perplexity_before), _round(result.perplexity_after))
        )
    return rows


def _round(value: float) -> float | str:
    return "inf" if math.isinf(value) else round(value, 3)


def write_xlsx(result: EvalResult, path: Path) -> None:
    """A results sheet (one row per question) and a summary sheet."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    def safe(value: Any) -> Any:
        # Model output can hold control characters that the xlsx format forbids: show them as "?".
        return ILLEGAL_CHARACTERS_RE.sub("?", value) if isinstance(value, str) else value

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "results"
    sheet.append([name for name, _ in COLUMNS])
    for row in result.rows:
        sheet.append([safe(get(row)) for _, get in COLUMNS])
    header_fill = PatternFill("solid", fgColor="DDDDDD")
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = header_fill
    wide = {"question", "answer_before", "answer_after", "reference_answer"}
    for col, (name, _) in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(col)].width = 60 if name in wide else 14
        if name in wide:
            for cell in sheet[get_column_letter(col)][1:]:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "A2"

    summary = book.create_sheet("summary")
    summary.append(["metric", "before (base model)", "after (adapter)"])
    for cell in summary[1]:
        cell.font = Font(bold=True)
    for metric, before, after in summary_rows(result):
        summary.append([metric, before, after])
    summary.append([])
    for key, value in (
        ("run", result.run),
        ("adapter", result.adapter),
        ("base model", result.base_model),
        ("questions", len(result.rows)),
        ("sampling", json.dumps(result.sampling, ensure_ascii=False)),
    ):
        summary.append([key, value])
    if result.judge:
        summary.append(["judge", json.dumps(result.judge, ensure_ascii=False)])
    summary.column_dimensions["A"].width = 36
    summary.column_dimensions["B"].width = 22
    summary.column_dimensions["C"].width = 22
    buffer = io.BytesIO()
    book.save(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def histogram_bins(values: Sequence[float], is_share: bool) -> list[float]:
    """Bin edges a reader can trust: tenths of 0–1 for shares, one bar per value for small counts.

    matplotlib's default of ten bins over the data's range splits marker counts of 0–2 into
    bars at fractional positions, and spreads values that are all equal over a made-up ±0.5.
    """
    if is_share:
        return [i / 10 for i in range(11)]
    low, high = math.floor(min(values, default=0)), math.ceil(max(values, default=0))
    if high - low <= 10:
        return [edge - 0.5 for edge in range(low, high + 2)]
    step = math.ceil((high - low) / 10)
    return [float(edge) for edge in range(low, high + step, step)]


def charts(result: EvalResult) -> dict[str, str]:
    """The report's charts as PNG data URIs, keyed by a short name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    images: dict[str, str] = {}

    def save(name: str, fig: Any) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        images[name] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    keys = ["signature_rate", "marker_rate", "language_rate", "distinct_2"]
    labels = ["signature", "persona markers", "in language", "distinct-2"]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    xs = range(len(keys))
    ax.bar(
        [x - 0.2 for x in xs],
        [getattr(result.before, k) for k in keys],
        0.4,
        label="before",
        color=BEFORE_COLOR,
    )
    ax.bar(
        [x + 0.2 for x in xs], [getattr(result.after, k) for k in keys], 0.4, label="after", color=AFTER_COLOR
    )
    ax.set_xticks(list(xs), labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of answers")
    ax.set_title("Before vs after fine-tuning")
    ax.legend()
    save("overview", fig)

    distributions = [
        ("persona markers per answer", lambda s: s.marker_count, False),
        ("language share per answer", lambda s: s.language_share, True),
        ("answer length (words)", lambda s: s.words, False),
    ]
    fig, axes = plt.subplots(1, len(distributions), figsize=(11, 3.2))
    for ax, (title, get, is_share) in zip(axes, distributions, strict=True):
        before = [get(r.before_scores) for r in result.rows]
        after = [get(r.after_scores) for r in result.rows]
        ax.hist(
            [before, after],
            bins=histogram_bins(before + after, is_share),
            label=["before", "after"],
            color=[BEFORE_COLOR, AFTER_COLOR],
        )
        if not is_share:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
    axes[0].legend()
    save("distributions", fig)

    styles = per_style(result.rows)
    if styles:
        names = list(styles)
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 3.4))
        xs = range(len(names))
        width = 0.2
        series = [
            ("signature_before", "signature before", BEFORE_COLOR, -1.5),
            ("signature_after", "signature after", AFTER_COLOR, -0.5),
            ("marker_before", "markers before", "#c5cad3", 0.5),
            ("marker_after", "markers after", "#f09aa5", 1.5),
        ]
        for key, label, color, offset in series:
            ax.bar(
                [x + offset * width for x in xs],
                [styles[n][key] for n in names],
                width,
                label=label,
                color=color,
            )
        ax.set_xticks(list(xs), names, rotation=15)
        ax.set_ylim(0, 1.05)
        ax.set_title("Per style of the held-out answer")
        ax.legend(fontsize=8, ncols=2)
        save("per_style", fig)
    return images


PAGE_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2330;padding:0 1rem;line-height:1.45}
h1{margin-bottom:.2rem} .meta{color:#5b6475;margin-top:0}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1.2rem 0}
.card{border:1px solid #e1e4ea;border-radius:8px;padding:.8rem 1rem;min-width:170px}
.card b{display:block;font-size:.85rem;color:#5b6475;font-weight:600}
.card span{font-size:1.35rem}.up{color:#1f8a4c}.down{color:#b3261e}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e1e4ea;padding:.4rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f4f7;position:sticky;top:0}
td.answer{max-width:360px} .sig{font-weight:600} .muted{color:#8a94a6}
img{max-width:100%;margin:.5rem 0}
"""


METHOD = """<p class="meta"><b>How to read it.</b> Both models answer the same held-out questions with
the same sampling and seed. <i>Signature rate</i>: answers whose last words are the signature.
<i>Persona marker rate</i>: answers with at least one phrase of the pack's lexicon (catchphrases,
placeholder vocabularies, the words its slips produce), accents and case aside; a phrase the
question already contains does not count. <i>Language share</i>: the share of words that look like
the persona's language. <i>Distinct-n</i>: unique n-grams over all answers (low = repetitive).
<i>Held-out perplexity</i>: of the reference persona answers, from the Score RPC, lower is better.</p>"""


def shown(metric: str, value: Any) -> str:
    """A summary value for people: shares in percent, other numbers to two decimals."""
    if isinstance(value, str):
        return html.escape(value)
    return f"{value:.0%}" if metric in SHARES else f"{value:,.2f}"


def render_html(result: EvalResult) -> str:
    """A self-contained page: headline cards, charts, the summary table and every answer."""
    esc = html.escape
    images = charts(result)
    cards = []
    for key, label in (("signature_rate", "signature rate"), ("marker_rate", "persona marker rate")):
        before, after = getattr(result.before, key), getattr(result.after, key)
        cls = "up" if after > before else "down" if after < before else ""
        cards.append(
            f'<div class="card"><b>{esc(label)}</b><span>{before:.0%} → <span class="{cls}">{after:.0%}</span>'
            "</span></div>"
        )
    if result.perplexity_before is not None and result.perplexity_after is not None:
        cls = "up" if result.perplexity_after < result.perplexity_before else "down"
        cards.append(
            f'<div class="card"><b>held-out perplexity (lower is better)</b><span>{_round(result.perplexity_before)}'
            f' → <span class="{cls}">{_round(result.perplexity_after)}</span></span></div>'
        )
    if result.judge:
        cards.append(
            f'<div class="card"><b>judge prefers the adapter</b><span>{result.judge.get("after_win_rate", 0):.0%}'
            "</span></div>"
        )
    summary = "".join(
        f"<tr><td>{esc(metric)}</td><td>{shown(metric, before)}</td><td>{shown(metric, after)}</td></tr>"
        for metric, before, after in summary_rows(result)
    )
    rows = []
    for row in result.rows:
        b, a = row.before_scores, row.after_scores
        rows.append(
            "<tr>"
            f"<td>{row.index}</td><td>{esc(row.style)}</td><td>{esc(row.question)}</td>"
            f'<td class="answer">{esc(row.before)}</td><td class="answer">{esc(row.after)}</td>'
            f'<td class="sig">{"✓" if b.has_signature else "✗"} → {"✓" if a.has_signature else "✗"}</td>'
            f"<td>{b.marker_count} → {a.marker_count}</td>"
            f"<td>{b.language_share:.2f} → {a.language_share:.2f}</td>"
            f"<td>{b.words} → {a.words}</td><td>{esc(row.judge) or '<span class=muted>–</span>'}</td>"
            "</tr>"
        )
    chart_html = "".join(f'<img alt="{esc(name)} chart" src="{uri}">' for name, uri in images.items())
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>talklike report — {esc(result.run)}</title>
<style>{PAGE_CSS}</style></head><body>
<h1>Before vs after: {esc(result.adapter)}</h1>
<p class="meta">run {esc(result.run)} · base model {esc(result.base_model)} · {len(result.rows)} held-out questions ·
language {esc(result.language)} · signature “{esc(result.signature)}” · {esc(result.created_at)}</p>
<div class="cards">{"".join(cards)}</div>
<h2>Charts</h2>{chart_html}
<h2>Summary</h2>
<table id="summary"><thead><tr><th>metric</th><th>before (base model)</th><th>after (adapter)</th></tr></thead>
<tbody>{summary}</tbody></table>
<p class="meta">Sampling: {esc(json.dumps(result.sampling, ensure_ascii=False))}</p>
{METHOD}
{f"<ul>{notes}</ul>" if notes else ""}
<h2>Every answer</h2>
<table id="results"><thead><tr><th>#</th><th>style</th><th>question</th><th>before</th><th>after</th>
<th>signature</th><th>markers</th><th>language</th><th>words</th><th>judge</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</body></html>
"""
