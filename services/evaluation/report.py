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
from talklike.evaluation.metrics import ALPHA, BY_KEY, METRICS, RATE, Metric
from talklike.evaluation.results import EvalResult, EvalRow, per_style
from talklike.evaluation.scoring import AnswerScores

BEFORE_COLOR = "#8a94a6"
AFTER_COLOR = "#d1495b"


def _flag(value: bool) -> int:
    return int(value)


#: Column name → how to read it from a row; one list serves the CSV, the sheet and the HTML table.
COLUMNS: list[tuple[str, Callable[[EvalRow], Any]]] = [
    ("#", lambda r: r.index),
    ("source", lambda r: r.source),
    ("style", lambda r: r.style),
    ("topic", lambda r: r.topic),
    ("question", lambda r: r.question),
    ("answer_before", lambda r: r.before),
    ("answer_after", lambda r: r.after),
    ("signature_before", lambda r: _flag(r.before_scores.has_signature)),
    ("signature_after", lambda r: _flag(r.after_scores.has_signature)),
    ("markers_before", lambda r: r.before_scores.marker_count),
    ("markers_after", lambda r: r.after_scores.marker_count),
    ("real_words_before", lambda r: r.before_scores.real_word_share),
    ("real_words_after", lambda r: r.after_scores.real_word_share),
    ("not_language_before", lambda r: _flag(r.before_scores.not_language)),
    ("not_language_after", lambda r: _flag(r.after_scores.not_language)),
    ("unknown_words_before", lambda r: ", ".join(r.before_scores.unknown_words)),
    ("unknown_words_after", lambda r: ", ".join(r.after_scores.unknown_words)),
    ("loop_before", lambda r: _flag(r.before_scores.loop)),
    ("loop_after", lambda r: _flag(r.after_scores.loop)),
    ("loop_why_before", lambda r: r.before_scores.loop_reason),
    ("loop_why_after", lambda r: r.after_scores.loop_reason),
    ("relevant_before", lambda r: _flag(r.before_scores.relevant)),
    ("relevant_after", lambda r: _flag(r.after_scores.relevant)),
    ("relevant_why_after", lambda r: r.after_scores.relevance_reason),
    ("copied_share_before", lambda r: r.before_scores.copied_share),
    ("copied_share_after", lambda r: r.after_scores.copied_share),
    ("opening_before", lambda r: r.before_scores.opening),
    ("opening_after", lambda r: r.after_scores.opening),
    ("language_share_before", lambda r: r.before_scores.language_share),
    ("language_share_after", lambda r: r.after_scores.language_share),
    ("words_before", lambda r: r.before_scores.words),
    ("words_after", lambda r: r.after_scores.words),
    ("markers_found_after", lambda r: ", ".join(r.after_scores.markers_found)),
    ("judge", lambda r: r.judge),
    ("reference_answer", lambda r: r.reference),
]

#: The blocks of summary.json's "metrics", as the page and the sheet name them.
BLOCK_TITLES = {"template": "template-held-out", "freeform": "free-form", "overall": "all questions"}


def blocks_shown(result: EvalResult) -> list[str]:
    """The metric blocks to show, side by side: each source, then "overall" when there are several."""
    return block_names(result.sources)


def block_names(sources: list[str]) -> list[str]:
    """Each question source's block, then "overall" when there are several."""
    return [*sources, "overall"] if len(sources) > 1 else sources or ["overall"]


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


def _round(value: float) -> float | str:
    return "inf" if math.isinf(value) else round(value, 3)


def summary_rows(result: EvalResult) -> list[list[Any]]:
    """The summary sheet's rows: per block and metric, both sides with intervals, the test and p-value."""
    rows: list[list[Any]] = []
    for block_name in blocks_shown(result):
        block = result.metrics[block_name]
        for metric in METRICS:
            entry = block[metric.key]
            b, a = entry["before"], entry["after"]
            note = (
                f"before: “{b.get('opening', '')}” · after: “{a.get('opening', '')}”"
                if "opening" in a
                else ""
            )
            rows.append(
                [
                    metric.label,
                    BLOCK_TITLES.get(block_name, block_name),
                    b["value"],
                    *(b["ci"] or [None, None]),
                    a["value"],
                    *(a["ci"] or [None, None]),
                    entry["test"],
                    entry["p_value"],
                    metric.better,
                    note,
                ]
            )
    return rows


SUMMARY_HEADER = [
    "metric",
    "questions",
    "before (base model)",
    "before 95% low",
    "before 95% high",
    "after (adapter)",
    "after 95% low",
    "after 95% high",
    "paired test",
    "p-value",
    "better",
    "note",
]


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
    summary.append(SUMMARY_HEADER)
    for cell in summary[1]:
        cell.font = Font(bold=True)
    for values in summary_rows(result):
        summary.append([safe(value) for value in values])
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
    summary.column_dimensions["A"].width = 24
    for col in range(2, len(SUMMARY_HEADER) + 1):
        summary.column_dimensions[get_column_letter(col)].width = 16
    summary.column_dimensions[get_column_letter(len(SUMMARY_HEADER))].width = 50
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

    overall = result.metrics["overall"]
    rates = [m for m in METRICS if m.kind == RATE]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    xs = range(len(rates))
    for side, offset, color in (("before", -0.2, BEFORE_COLOR), ("after", 0.2, AFTER_COLOR)):
        values = [overall[m.key][side]["value"] for m in rates]
        intervals = [overall[m.key][side]["ci"] for m in rates]
        ax.bar(
            [x + offset for x in xs],
            values,
            0.4,
            yerr=[
                [v - ci[0] for v, ci in zip(values, intervals, strict=True)],
                [ci[1] - v for v, ci in zip(values, intervals, strict=True)],
            ],
            capsize=3,
            label=side,
            color=color,
            error_kw={"elinewidth": 1, "ecolor": "#1d2330"},
        )
    ax.set_xticks(list(xs), [m.label for m in rates], rotation=12)
    ax.set_ylim(0, 1.18)  # room for the legend above the bars that reach 100 %
    ax.set_ylabel("share of answers")
    ax.set_title("Before vs after fine-tuning (bars: 95% Wilson intervals)")
    ax.legend(ncols=2, loc="upper center", frameon=False)
    save("overview", fig)

    distributions = [
        ("persona markers per answer", lambda s: s.marker_count, False),
        ("real-word share per answer", lambda s: s.real_word_share, True),
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
        ax.set_ylim(0, 1.32)  # room for the legend above the bars that reach 100 %
        ax.set_title("Per style of the held-out answer")
        ax.legend(fontsize=8, ncols=2, loc="upper center", frameon=False)
        save("per_style", fig)
    return images


PAGE_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1280px;
color:#1d2330;padding:0 1rem;line-height:1.45}
h1{margin-bottom:.2rem} .meta{color:#5b6475;margin-top:0}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1.2rem 0}
.card{border:1px solid #e1e4ea;border-radius:8px;padding:.8rem 1rem;min-width:170px}
.card b{display:block;font-size:.85rem;color:#5b6475;font-weight:600}
.card span{font-size:1.35rem}.card small{display:block;color:#5b6475;font-size:.75rem}
.up{color:#1f8a4c}.down{color:#b3261e}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e1e4ea;padding:.4rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f4f7;position:sticky;top:0}
td.answer{max-width:360px;white-space:pre-wrap} .sig{font-weight:600} .muted{color:#8a94a6}
td small,.ci{display:block;color:#5b6475;font-size:.75rem;white-space:nowrap}
.p.significant{font-weight:700}
th.group{text-align:center;border-left:2px solid #c9ced8} td.first{border-left:2px solid #c9ced8}
td.answer.loop,td.answer.notlang{background:#fdf1f2}
.badge{display:inline-block;border-radius:4px;padding:0 .35rem;margin:.15rem .25rem 0 0;font-size:.72rem;
font-weight:600;color:#fff;background:#b3261e}
.badge.offtopic{background:#a86b00}
.badge.copy{background:#5b6475}
dl.metrics dt{font-weight:600;margin-top:.5rem} dl.metrics dd{margin-left:1rem;color:#3a4150}
img{max-width:100%;margin:.5rem 0}
"""


METHOD = f"""<p class="meta"><b>How to read it.</b> Both models answer the same questions with the same
sampling and seed: the dataset's template-held-out questions (worded by question templates that no
training example used, each with the persona's reference answer) and the pack's free-form questions
(written by hand like a journalist's, no template produced them, no reference answer). Every value comes
with its 95&nbsp;% interval in brackets: Wilson score intervals for shares of answers, bootstrap intervals
(2,000 resamples of the questions, fixed seed) for means and perplexity. The p-value is a paired test of
before vs after on the same questions: exact McNemar for shares (only questions whose verdict changed
count), the sign test for per-question numbers (questions that got better vs worse). Below
{ALPHA:g} (shown in bold) the difference is unlikely to be chance; above it, the benchmark cannot tell
the two models apart on that metric, whatever the numbers say.</p>"""


def explanations() -> str:
    """Every metric explained in plain words, from the same table that computes them."""
    items = "".join(
        f"<dt>{html.escape(m.label)}{f' ({m.better} is better)' if m.better else ''}</dt>"
        f"<dd>{html.escape(m.explanation)}</dd>"
        for m in METRICS
    )
    return f'<dl class="metrics">{items}</dl>'


def shown(metric: Metric, value: float | None) -> str:
    """A value for people: shares in percent, other numbers to two decimals, "–" for none."""
    if value is None:
        return "–"
    return f"{value:.0%}" if metric.percent else f"{value:,.2f}"


def with_interval(metric: Metric, side: dict[str, Any]) -> str:
    """ "43% [32–55%]" as HTML: the value, and its interval below it in small print."""
    value = shown(metric, side["value"])
    if "opening" in side:
        value += f" <small>“{html.escape(side['opening'])}”</small>"
    ci = side.get("ci")
    if not ci:
        return value
    low, high = shown(metric, ci[0]), shown(metric, ci[1])
    return f'{value}<span class="ci">[{low} – {high}]</span>'


def p_cell(p_value: float | None) -> str:
    if p_value is None:
        return '<span class="muted">–</span>'
    cls = "p significant" if p_value < ALPHA else "p"
    return f'<span class="{cls}">{"&lt; 0.001" if p_value < 0.001 else f"{p_value:.3f}"}</span>'


def summary_table(result: EvalResult) -> str:
    """Metrics down, question sets across (each: before, after, p-value)."""
    names = blocks_shown(result)
    groups = "".join(
        f'<th class="group" colspan="3">{html.escape(BLOCK_TITLES.get(n, n))} '
        f"({result.metrics[n]['questions']} questions)</th>"
        for n in names
    )
    columns = "<th>before</th><th>after</th><th>p</th>" * len(names)
    body = []
    for metric in METRICS:
        cells = []
        for name in names:
            entry = result.metrics[name][metric.key]
            cells.append(
                f'<td class="first">{with_interval(metric, entry["before"])}</td>'
                f"<td>{with_interval(metric, entry['after'])}</td><td>{p_cell(entry['p_value'])}</td>"
            )
        body.append(f"<tr><td>{html.escape(metric.label)}</td>{''.join(cells)}</tr>")
    return (
        f'<table id="summary"><thead><tr><th rowspan="2">metric</th>{groups}</tr><tr>{columns}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def card(metric: Metric, entry: dict[str, Any]) -> str:
    """A headline card: before → after, the after interval and the p-value."""
    before, after = entry["before"]["value"], entry["after"]["value"]
    cls = ""
    if before is not None and after is not None and metric.better and after != before:
        cls = "up" if (after > before) == (metric.better == "higher") else "down"
    ci = entry["after"].get("ci")
    interval = f"after: [{shown(metric, ci[0])} – {shown(metric, ci[1])}] · " if ci else ""
    p = entry["p_value"]
    return (
        f'<div class="card"><b>{html.escape(metric.label)}</b><span>{shown(metric, before)} → '
        f'<span class="{cls}">{shown(metric, after)}</span></span>'
        f"<small>{interval}p = {p_cell(p)}</small></div>"
    )


def badges(scores: AnswerScores) -> str:
    """What a reader should notice about an answer: it loops, is not the language, or is off topic."""
    out = []
    if scores.loop:
        out.append(f'<span class="badge loop" title="{html.escape(scores.loop_reason)}">loop</span>')
    if scores.not_language:
        unknown = ", ".join(scores.unknown_words[:12])
        out.append(
            f'<span class="badge notlang" title="real words {scores.real_word_share:.0%}; not real: '
            f'{html.escape(unknown)}">not the language</span>'
        )
    if not scores.relevant:
        out.append('<span class="badge offtopic">off topic</span>')
    if scores.copies_prompt:
        out.append(
            f'<span class="badge copy" title="{scores.copied_share:.0%} of the words copied from the prompt">'
            "copies the prompt</span>"
        )
    return "".join(out)


def answer_cell(text: str, scores: AnswerScores) -> str:
    classes = " ".join(
        ["answer", *(["loop"] if scores.loop else []), *(["notlang"] if scores.not_language else [])]
    )
    flags = badges(scores)
    return f'<td class="{classes}">{html.escape(text)}{"<br>" + flags if flags else ""}</td>'


def render_html(result: EvalResult) -> str:
    """A self-contained page: headline cards, charts, the summary table and every answer."""
    esc = html.escape
    images = charts(result)
    overall = result.metrics["overall"]
    headline = (
        "signature_rate",
        "marker_rate",
        "not_language_rate",
        "loop_rate",
        "relevance_rate",
        "perplexity",
    )
    cards = [
        card(BY_KEY[key], overall[key]) for key in headline if overall[key]["before"]["value"] is not None
    ]
    if result.judge:
        cards.append(
            f'<div class="card"><b>judge prefers the adapter</b><span>{result.judge.get("after_win_rate", 0):.0%}'
            f"</span><small>p = {p_cell(result.judge.get('p_value'))}</small></div>"
        )
    rows = []
    for row in result.rows:
        b, a = row.before_scores, row.after_scores
        rows.append(
            "<tr>"
            f"<td>{row.index}</td><td>{esc(row.source)}</td><td>{esc(row.style)}</td><td>{esc(row.question)}</td>"
            f"{answer_cell(row.before, b)}{answer_cell(row.after, a)}"
            f'<td class="sig">{"✓" if b.has_signature else "✗"} → {"✓" if a.has_signature else "✗"}</td>'
            f"<td>{b.marker_count} → {a.marker_count}</td>"
            f"<td>{b.real_word_share:.2f} → {a.real_word_share:.2f}</td>"
            f"<td>{b.words} → {a.words}</td><td>{esc(row.judge) or '<span class=muted>–</span>'}</td>"
            "</tr>"
        )
    chart_html = "".join(f'<img alt="{esc(name)} chart" src="{uri}">' for name, uri in images.items())
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.notes)
    counts = " + ".join(
        f"{sum(r.source == s for r in result.rows)} {BLOCK_TITLES.get(s, s)}" for s in result.sources
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>talklike report — {esc(result.run)}</title>
<style>{PAGE_CSS}</style></head><body>
<h1>Before vs after: {esc(result.adapter)}</h1>
<p class="meta">run {esc(result.run)} · base model {esc(result.base_model)} · {len(result.rows)} questions ({esc(counts)}) ·
language {esc(result.language)} · signature “{esc(result.signature)}” · {esc(result.created_at)}</p>
<div class="cards">{"".join(cards)}</div>
<h2>Charts</h2>{chart_html}
<h2>Summary</h2>
{summary_table(result)}
<p class="meta">Sampling: {esc(json.dumps(result.sampling, ensure_ascii=False))}</p>
{METHOD}
<h3>The metrics</h3>
{explanations()}
{f"<ul>{notes}</ul>" if notes else ""}
<h2>Every answer</h2>
<p class="meta">Answers that loop or are not the language are shaded and badged; hover a badge for the evidence.</p>
<table id="results"><thead><tr><th>#</th><th>source</th><th>style</th><th>question</th><th>before</th><th>after</th>
<th>signature</th><th>markers</th><th>real words</th><th>words</th><th>judge</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</body></html>
"""
