"""Reviewing packs: a few generated answers to judge the voice, and what differs between two packs.

A drafted pack is an LLM's work; a person should read some of what it generates before
training on it (``talklike packs show NAME --sample 10``), and compare it with a pack they
trust (``talklike packs diff A B``): is it as large, are its vocabularies as rich, which
words do both use.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.generation.dedupe import fold
from talklike.generation.engine import AnswerGenerator
from talklike.generation.packs import Pack, describe
from talklike.generation.questions import QuestionPicker

MAX_SAMPLE = 100
#: Values shown per side for a placeholder the two packs share but fill differently.
SHOWN_VALUES = 5


@dataclass(frozen=True)
class Sample:
    """One generated example: the question a journalist asks and the pack's answer."""

    style: str
    topic: str
    template_id: str
    question: str
    answer: str


def sample(
    pack: Pack, count: int, seed: int = 0, slip_probability: float = 0.15, field_name: str = "sample"
) -> list[Sample]:
    """``count`` examples drawn as a dataset run draws them (even styles, slips, fitting questions).

    Fewer come back when the pack cannot produce ``count`` distinct answers; a ``count`` out of
    range is InvalidArgument on ``field_name``.
    """
    if not 1 <= count <= MAX_SAMPLE:
        raise InvalidArgument(field_name, f"must be between 1 and {MAX_SAMPLE}, got {count}")
    # One answer per batch, so the answers made before a pack runs dry are kept.
    generator = AnswerGenerator(
        pack, seed, slip_probability=slip_probability if pack.slips else 0.0, batch_size=1
    )
    picker = QuestionPicker(pack, pack.questions, random.Random(f"talklike-sample:{seed}"))
    out: list[Sample] = []
    try:
        for batch in generator.batches(count):
            for answer in batch:
                question, _question_id = picker.question_for(answer)
                out.append(Sample(answer.style, answer.topic, answer.template_id, question, answer.text))
    except FailedPrecondition:
        pass  # the pack ran out of distinct answers: show what it made
    return out


def _words(pack: Pack) -> set[str]:
    """Distinct folded words of the pack's templates (placeholder names left out)."""
    words: set[str] = set()
    for template in pack.templates:
        literal = "".join(template.text.parts[0::2])
        words.update(fold(literal).split())
    return words


def _overlap(a: set[str], b: set[str]) -> dict[str, Any]:
    shared = a & b
    union = a | b
    return {
        "a": len(a),
        "b": len(b),
        "shared": len(shared),
        "only_a": len(a - b),
        "only_b": len(b - a),
        "jaccard": round(len(shared) / len(union), 3) if union else 1.0,
    }


def diff(a: Pack, b: Pack) -> dict[str, Any]:
    """Sizes side by side, styles and placeholders each pack has, and how their vocabularies overlap."""
    info_a, info_b = describe(a), describe(b)
    keys = (
        "templates",
        "styles",
        "placeholders",
        "placeholder_values",
        "questions",
        "slips",
        "topics",
        "catchphrases",
        "combinations_log10",
    )
    sizes = {k: {"a": info_a[k], "b": info_b[k], "delta": round(info_b[k] - info_a[k], 2)} for k in keys}
    style_counts_a = {s["id"]: s["templates"] for s in info_a["styles_detail"]}
    style_counts_b = {s["id"]: s["templates"] for s in info_b["styles_detail"]}
    styles = {
        "only_a": sorted(set(style_counts_a) - set(style_counts_b)),
        "only_b": sorted(set(style_counts_b) - set(style_counts_a)),
        "both": {
            s: {"a": style_counts_a[s], "b": style_counts_b[s]} for s in style_counts_a if s in style_counts_b
        },
    }
    placeholders: dict[str, Any] = {}
    for name in sorted(set(a.placeholders) | set(b.placeholders)):
        values_a = set(a.placeholders.get(name, ()))
        values_b = set(b.placeholders.get(name, ()))
        row = _overlap(values_a, values_b)
        row["in"] = "both" if values_a and values_b else ("a" if values_a else "b")
        if values_a and values_b:
            row["examples_only_a"] = sorted(values_a - values_b)[:SHOWN_VALUES]
            row["examples_only_b"] = sorted(values_b - values_a)[:SHOWN_VALUES]
        placeholders[name] = row
    folded_topics_a = {fold(t) for t in a.topics}
    folded_topics_b = {fold(t) for t in b.topics}
    return {
        "a": {"name": a.name, "display_name": a.display_name, "language": a.language, "source": a.source},
        "b": {"name": b.name, "display_name": b.display_name, "language": b.language, "source": b.source},
        "sizes": sizes,
        "styles": styles,
        "placeholders": placeholders,
        "topics": _overlap(folded_topics_a, folded_topics_b),
        "template_words": _overlap(_words(a), _words(b)),
        "catchphrases": _overlap({fold(c) for c in a.catchphrases}, {fold(c) for c in b.catchphrases}),
        "mean_template_chars": {
            "a": _mean(len(t.text.raw) for t in a.templates),
            "b": _mean(len(t.text.raw) for t in b.templates),
        },
    }


def _mean(values: Any) -> float:
    items = list(values)
    return round(math.fsum(items) / len(items), 1) if items else 0.0
