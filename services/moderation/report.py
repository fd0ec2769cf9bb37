"""The human-readable moderation report (``report.md``), rendered from ``report.json``.

Written from the JSON so that the two can never disagree. It leads with the answer a person
wants — will OpenAI's gate block this file, and what to do — then the counts, the categories
and the worst examples, so a reviewer can see why something was removed.
"""

from __future__ import annotations

from typing import Any

VERDICT_WORDS = {"pass": "PASS — not likely to be blocked", "likely_blocked": "LIKELY BLOCKED"}


def _cell(text: Any) -> str:
    """Table-safe text: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _pct(value: float) -> str:
    return f"{value:.1%}"


def render_markdown(report: dict[str, Any]) -> str:
    """Markdown for a person: verdict and advice, counts, categories, worst examples, quarantine."""
    counts = report["counts"]
    policy = report["policy"]
    pre_in, pre_out = report["preflight"]["input"], report["preflight"]["output"]
    files = report["files"]
    lines = [
        f"# Moderation report: {_cell(report['file'])}",
        "",
        f"Backend **{report['backend']}** (`{report['model']}`), action **{policy['action']}**, "
        f"turns checked: {', '.join(policy['roles'])}.",
        "",
        "## Pre-flight: OpenAI's training-file moderation",
        "",
        "| file | examples | violating | share | limit | verdict |",
        "|---|---:|---:|---:|---:|---|",
        f"| input ({_cell(report['file'])}) | {pre_in['examples']} | {pre_in['flagged']} | "
        f"{_pct(pre_in['flagged_share'])} | {_pct(pre_in['flagged_share_limit'])} | "
        f"{VERDICT_WORDS[pre_in['verdict']]} |",
        f"| output ({files['moderated']}) | {pre_out['examples']} | {pre_out['flagged']} | "
        f"{_pct(pre_out['flagged_share'])} | {_pct(pre_out['flagged_share_limit'])} | "
        f"{VERDICT_WORDS[pre_out['verdict']]} |",
        "",
        f"**Input:** {pre_in['advice']}",
        "",
        f"**Output:** {pre_out['advice']}",
        "",
        "OpenAI does not publish its gate's limit; the share limit here is a setting "
        "(`--flagged-share-limit`, `TALKLIKE_MODERATION_FLAGGED_SHARE_LIMIT`).",
        "",
        "## Counts",
        "",
        "| | lines |",
        "|---|---:|",
        f"| read | {counts['lines']} |",
        f"| kept ({files['moderated']}) | {counts['kept']} |",
        f"| removed ({files['flagged'] if policy['action'] == 'drop' else 'none: annotate'}) | {counts['removed']} |",
        f"| quarantined ({files['quarantine']}) | {counts['quarantined']} |",
        f"| violating the policy | {counts['flagged']} ({_pct(counts['flagged_share'])} of {counts['examples']} examples) |",
        f"| flagged by the backend itself | {counts['backend_flagged']} |",
        "",
        f"Every line is accounted for: {report['invariant']}. "
        f"{counts['turns_checked']} turns checked, {counts['texts_scored']} distinct texts scored.",
        "",
        "## Categories",
        "",
        "| category | threshold | violating examples | flagged by backend | max score | mean score |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["categories"]:
        lines.append(
            f"| {row['category']} | {row['threshold']:.2f} | {row['violations']} | {row['backend_flagged']} | "
            f"{row['max_score']:.3f} | {row['mean_score']:.4f} |"
        )
    lines += ["", "## Worst examples", ""]
    worst = report["worst_examples"]
    if not worst:
        lines.append("No example scored above 0 in any category.")
    else:
        lines += ["| line | max score | category | violates | turn | text |", "|---:|---:|---|---|---|---|"]
        for row in worst:
            lines.append(
                f"| {row['line_number']} | {row['max_score']:.3f} | {row['top_category']} | "
                f"{', '.join(row['violations']) or 'no'} | {row['role']} | {_cell(row['text'])} |"
            )
        reasons = [(row["line_number"], r) for row in worst for r in row["reasons"]]
        if reasons:
            lines += ["", "Why (local backend rules that fired):", ""]
            lines += [f"- line {number}: {_cell(reason)}" for number, reason in reasons[:40]]
    quarantined = report["quarantined"]
    lines += ["", "## Quarantined lines", ""]
    if not quarantined:
        lines.append("None: every line is a valid chat example.")
    else:
        lines += ["| line | where | reason |", "|---:|---|---|"]
        for row in quarantined[:50]:
            lines.append(
                f"| {row['line_number']} | {_cell(row['field_path']) or '—'} | {_cell(row['reason'])} |"
            )
        if len(quarantined) > 50:
            lines.append(f"\n…and {len(quarantined) - 50} more in {files['quarantine']} and report.json.")
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {_cell(w)}" for w in report["warnings"]]
    if report["backend"] == "local":
        lines += [
            "",
            "## About the local backend",
            "",
            "The local backend is a Czech + English lexicon and rule classifier, not a model: it finds harm "
            "said in so many words and misses paraphrase, coded language and other languages. Its scores rank "
            "texts; they are not OpenAI's. Before uploading to OpenAI, a run with `--backend openai` checks "
            "the file with the model the gate uses. `talklike moderate eval` shows its precision and recall.",
        ]
    return "\n".join(lines) + "\n"
