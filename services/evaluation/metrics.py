"""Every metric of the report with its 95 % interval and the before-vs-after test, per question set.

One table (``METRICS``) names each metric, what kind it is (a rate of answers, a mean over
answers, a statistic of the whole set, or perplexity), which direction is better, how to read
it from an answer's scores, and how to explain it to a reader. The same table feeds
summary.json, the spreadsheet, the HTML page and ``talklike eval compare``, so they cannot
disagree about what a metric is.

Intervals: Wilson for rates, bootstrap over questions for means and perplexity (stats.py).
Paired tests (the same questions answered before and after): exact McNemar for rates, the
sign test for per-question numbers and for perplexity (per-question log-prob per token).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from talklike.evaluation.echo import COPIES_PROMPT_FROM, COPY_RUN_WORDS
from talklike.evaluation.realwords import NOT_LANGUAGE_BELOW
from talklike.evaluation.scoring import AnswerScores, distinct_n, top_opening
from talklike.evaluation.stats import (
    Interval,
    bootstrap,
    mcnemar_exact,
    mean,
    pooled_perplexity,
    rounded_p,
    sign_test,
    wilson,
)

RATE, MEAN, SET, PERPLEXITY = "rate", "mean", "set", "perplexity"
#: A paired test below this p-value is called significant on the page.
ALPHA = 0.05


@dataclass(frozen=True)
class Metric:
    """A metric's definition; ``get`` reads an answer's value (rates: 0/1, means: a number)."""

    key: str
    label: str
    kind: str
    #: "higher" or "lower" is better; "" when neither (length).
    better: str
    explanation: str
    get: Callable[[AnswerScores], float] | None = None
    #: ``percent``: shown as a percentage on the page.
    percent: bool = True


METRICS: tuple[Metric, ...] = (
    Metric(
        "signature_rate",
        "signature",
        RATE,
        "higher",
        "Share of answers whose last words are the signature (case, accents and punctuation aside).",
        lambda s: float(s.has_signature),
    ),
    Metric(
        "marker_rate",
        "persona markers",
        RATE,
        "higher",
        "Share of answers with at least one phrase of the pack's lexicon (catchphrases, placeholder "
        "vocabularies but the topics, words its slips produce), accents and case aside; a phrase the question "
        "already contains does not count, nor one in a run copied from the prompt.",
        lambda s: float(s.marker_count > 0),
    ),
    Metric(
        "not_language_rate",
        "not the language",
        RATE,
        "lower",
        f"Share of answers in which fewer than {NOT_LANGUAGE_BELOW:.0%} of the words are real words of "
        "the persona's language (see real-word share), or that have no words at all. Gibberish "
        "(“dalžka”) and English answers land here.",
        lambda s: float(s.not_language),
    ),
    Metric(
        "loop_rate",
        "loops",
        RATE,
        "lower",
        "Share of answers that repeat themselves: a sequence of four words occurs three or more "
        "times, or (in answers of 8+ words) one word is over 30 % of the words; the signature is "
        "left out. A catchphrase said twice or a tricolon (“na X jsem expert, na Y jsem expert, na Z "
        "jsem expert”) is rhetoric and does not count.",
        lambda s: float(s.loop),
    ),
    Metric(
        "relevance_rate",
        "on topic",
        RATE,
        "higher",
        "Share of answers that name the question's topic in any case form the pack declares (or a "
        "word sharing its stem: its first 5 letters, or 4 of a 5-letter word, whose last letter is "
        "an ending; all topic words present), or that take up a content word "
        "of the question (5+ letters, not a stop word, interview boilerplate or the persona's name). "
        "Judged on the answer's own words: a run of 4+ words copied from the prompt does not count "
        "(see “copies the prompt”).",
        lambda s: float(s.relevant),
    ),
    Metric(
        "copy_rate",
        "copies the prompt",
        RATE,
        "lower",
        f"Share of answers of which {COPIES_PROMPT_FROM:.0%} or more of the words stand in runs of "
        f"{COPY_RUN_WORDS}+ words copied from the prompt (the persona's system prompt and the question), "
        "case and accents aside. An untuned base model often echoes its prompt; persona markers and "
        "the topic are judged on the answer's own words, without those runs.",
        lambda s: float(s.copies_prompt),
    ),
    Metric(
        "top_opening_share",
        "same opening",
        RATE,
        "lower",
        "Mode collapse: the share of answers that start with the most common first three words "
        "(lower-cased, punctuation aside), shown with those words. A model that opens most answers "
        "the same way, whatever the question, has learned a template rather than a voice.",
    ),
    Metric(
        "language_rate",
        "language (stop words)",
        RATE,
        "higher",
        "Share of answers whose stop words and accented letters point to the persona's language "
        "(at least 60 % of that evidence). Coarse: it tells Czech from English, not Czech from "
        "gibberish; the real-word share does that.",
        lambda s: float(s.in_language),
    ),
    Metric(
        "mean_real_word_share",
        "real-word share",
        MEAN,
        "higher",
        "Mean over answers of the share of words that are real words of the persona's language: in "
        "the language's word-frequency list (wordfreq, ~600,000 Czech word forms, colloquial and "
        "inflected forms included) and not ten times more frequent in English, or words of the "
        "pack's own vocabulary and signature. Counted on the answer's own words: runs copied from "
        "the prompt are real language the model did not write (an answer that is all copy keeps "
        "the share of its copy).",
        lambda s: s.real_word_share,
    ),
    Metric(
        "markers_per_answer",
        "markers per answer",
        MEAN,
        "higher",
        "Mean number of distinct lexicon phrases per answer (as for persona markers).",
        lambda s: float(s.marker_count),
        percent=False,
    ),
    Metric(
        "mean_words",
        "length (words)",
        MEAN,
        "",
        "Mean answer length in words. Neither direction is better; very short answers say nothing, "
        "very long ones often ran into the token limit.",
        lambda s: float(s.words),
        percent=False,
    ),
    Metric(
        "distinct_2",
        "distinct-2",
        SET,
        "higher",
        "Unique word pairs over all word pairs of all answers: low means the answers repeat each "
        "other. A statistic of the whole set: no per-question interval or paired test.",
        percent=False,
    ),
    Metric(
        "perplexity",
        "held-out perplexity",
        PERPLEXITY,
        "lower",
        "Perplexity of the persona's reference answers (template-held-out questions only) under each "
        "model, from the Score RPC: exp(−total log-prob / total tokens). Lower means the model finds "
        "the persona's answers more likely. Interval: bootstrap over questions; test: sign test on "
        "per-question log-prob per token.",
        percent=False,
    ),
)
BY_KEY = {m.key: m for m in METRICS}


@dataclass(frozen=True)
class Side:
    """What the metrics need of one side's answers: texts, scores, and per-question (log-prob, tokens)."""

    answers: Sequence[str]
    scores: Sequence[AnswerScores]
    #: One entry per question with a reference answer: (total log-prob, token count).
    scored: Sequence[tuple[float, int]]


def _interval(interval: Interval | None) -> list[float] | None:
    return interval.as_list() if interval else None


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def side_value(metric: Metric, side: Side) -> dict[str, Any]:
    """One side's value of ``metric`` with its interval (and counts for rates)."""
    n = len(side.scores)
    if metric.kind == RATE:
        if metric.get is None:  # the opening share: answers starting with the most common opening
            opening, count = top_opening([s.opening for s in side.scores])
            extra: dict[str, Any] = {"opening": opening}
        else:
            count, extra = round(sum(metric.get(s) for s in side.scores)), {}
        return {
            "value": round(count / n, 4) if n else 0.0,
            "count": count,
            "n": n,
            "ci": wilson(count, n).as_list(),
            **extra,
        }
    if metric.kind == MEAN:
        assert metric.get is not None
        values = [metric.get(s) for s in side.scores]
        return {"value": round(mean(values), 4), "n": n, "ci": _interval(bootstrap(values, mean))}
    if metric.kind == PERPLEXITY:
        if not side.scored:
            return {"value": None, "n": 0, "ci": None}
        interval = bootstrap(side.scored, pooled_perplexity)
        return {
            "value": _finite(pooled_perplexity(side.scored)),
            "n": len(side.scored),
            "ci": [_finite(interval.low), _finite(interval.high)] if interval else None,
        }
    return {"value": round(distinct_n(side.answers, 2), 4), "n": n, "ci": None}


def paired_test(metric: Metric, before: Side, after: Side) -> tuple[str, float | None]:
    """(test name, p-value) of before vs after on the same questions; ("", None) where none applies."""
    if metric.kind == RATE:
        if metric.get is None:
            b_open, _ = top_opening([s.opening for s in before.scores])
            a_open, _ = top_opening([s.opening for s in after.scores])
            b = [float(bool(b_open) and s.opening == b_open) for s in before.scores]
            a = [float(bool(a_open) and s.opening == a_open) for s in after.scores]
        else:
            b = [metric.get(s) for s in before.scores]
            a = [metric.get(s) for s in after.scores]
        only_before = sum(x > y for x, y in zip(b, a, strict=True))
        only_after = sum(y > x for x, y in zip(b, a, strict=True))
        return "exact McNemar", rounded_p(mcnemar_exact(only_before, only_after))
    if metric.kind == MEAN:
        assert metric.get is not None
        diffs = [metric.get(y) - metric.get(x) for x, y in zip(before.scores, after.scores, strict=True)]
        return "sign test", rounded_p(sign_test(diffs))
    if metric.kind == PERPLEXITY and before.scored and len(before.scored) == len(after.scored):
        diffs = [
            lp_a / n_a - lp_b / n_b
            for (lp_b, n_b), (lp_a, n_a) in zip(before.scored, after.scored, strict=True)
            if n_a and n_b
        ]
        return "sign test", rounded_p(sign_test(diffs))
    return "", None


def metric_block(before: Side, after: Side) -> dict[str, Any]:
    """Every metric for one question set: label, kind, direction, both sides, the test and its p-value."""
    block: dict[str, Any] = {"questions": len(before.scores)}
    for metric in METRICS:
        test, p_value = paired_test(metric, before, after)
        block[metric.key] = {
            "label": metric.label,
            "kind": metric.kind,
            "better": metric.better,
            "before": side_value(metric, before),
            "after": side_value(metric, after),
            "test": test,
            "p_value": p_value,
        }
    return block
