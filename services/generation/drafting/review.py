"""Reviewing packs: a few generated answers to judge the voice, and what differs between two packs.

A drafted pack is an LLM's work; a person should read some of what it generates before
training on it (``talklike packs show NAME --sample 10``), and compare it with a pack they
trust (``talklike packs diff A B``): is it as large, are its vocabularies as rich, which
words do both use.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.generation.dedupe import fold
from talklike.generation.engine import AnswerGenerator
from talklike.generation.questions import QuestionPicker
from talklike.packs.loader import Pack, describe

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


@dataclass(frozen=True)
class Overlap:
    """Two sets compared: their sizes, what they share, and the Jaccard index (1 for two empty sets)."""

    a: int
    b: int
    shared: int
    only_a: int
    only_b: int
    jaccard: float

    @staticmethod
    def of(a: set[str], b: set[str]) -> Overlap:
        shared, union = a & b, a | b
        jaccard = round(len(shared) / len(union), 3) if union else 1.0
        return Overlap(len(a), len(b), len(shared), len(a - b), len(b - a), jaccard)


@dataclass(frozen=True)
class PlaceholderComparison:
    """One placeholder in either pack: which has it, how its values overlap, a few values only one has."""

    overlap: Overlap
    #: "both", "a" or "b".
    present_in: str
    examples_only_a: tuple[str, ...] = ()
    examples_only_b: tuple[str, ...] = ()


@dataclass(frozen=True)
class SizeComparison:
    """One count of both packs and b's difference from a."""

    a: float
    b: float
    delta: float


@dataclass(frozen=True)
class PackSide:
    """Who a compared pack is."""

    name: str
    display_name: str
    language: str
    source: str


@dataclass(frozen=True)
class PackDiff:
    """Two packs side by side (``diff``); ``as_dict`` is the shape ``packs diff --json`` prints."""

    a: PackSide
    b: PackSide
    sizes: dict[str, SizeComparison]
    styles_only_a: tuple[str, ...]
    styles_only_b: tuple[str, ...]
    #: Style id → (templates in a, templates in b), for the styles both have.
    styles_both: dict[str, tuple[int, int]]
    placeholders: dict[str, PlaceholderComparison]
    topics: Overlap
    template_words: Overlap
    catchphrases: Overlap
    mean_template_chars: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        placeholders: dict[str, Any] = {}
        for name, row in self.placeholders.items():
            item: dict[str, Any] = {**asdict(row.overlap), "in": row.present_in}
            if row.present_in == "both":
                item["examples_only_a"] = list(row.examples_only_a)
                item["examples_only_b"] = list(row.examples_only_b)
            placeholders[name] = item
        return {
            "a": asdict(self.a),
            "b": asdict(self.b),
            "sizes": {k: asdict(v) for k, v in self.sizes.items()},
            "styles": {
                "only_a": list(self.styles_only_a),
                "only_b": list(self.styles_only_b),
                "both": {s: {"a": a, "b": b} for s, (a, b) in self.styles_both.items()},
            },
            "placeholders": placeholders,
            "topics": asdict(self.topics),
            "template_words": asdict(self.template_words),
            "catchphrases": asdict(self.catchphrases),
            "mean_template_chars": {"a": self.mean_template_chars[0], "b": self.mean_template_chars[1]},
        }


#: The counts ``diff`` compares, as ``describe`` names them.
SIZES = (
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


def diff(a: Pack, b: Pack) -> PackDiff:
    """Sizes side by side, styles and placeholders each pack has, and how their vocabularies overlap."""
    info_a, info_b = describe(a), describe(b)
    sizes = {k: SizeComparison(info_a[k], info_b[k], round(info_b[k] - info_a[k], 2)) for k in SIZES}
    style_counts_a = {s["id"]: s["templates"] for s in info_a["styles_detail"]}
    style_counts_b = {s["id"]: s["templates"] for s in info_b["styles_detail"]}
    placeholders: dict[str, PlaceholderComparison] = {}
    for name in sorted(set(a.placeholders) | set(b.placeholders)):
        values_a = set(a.placeholders.get(name, ()))
        values_b = set(b.placeholders.get(name, ()))
        both = bool(values_a and values_b)
        placeholders[name] = PlaceholderComparison(
            Overlap.of(values_a, values_b),
            "both" if both else ("a" if values_a else "b"),
            tuple(sorted(values_a - values_b)[:SHOWN_VALUES]) if both else (),
            tuple(sorted(values_b - values_a)[:SHOWN_VALUES]) if both else (),
        )
    return PackDiff(
        a=PackSide(a.name, a.display_name, a.language, a.source),
        b=PackSide(b.name, b.display_name, b.language, b.source),
        sizes=sizes,
        styles_only_a=tuple(sorted(set(style_counts_a) - set(style_counts_b))),
        styles_only_b=tuple(sorted(set(style_counts_b) - set(style_counts_a))),
        styles_both={
            s: (style_counts_a[s], style_counts_b[s]) for s in style_counts_a if s in style_counts_b
        },
        placeholders=placeholders,
        topics=Overlap.of({fold(t) for t in a.topics}, {fold(t) for t in b.topics}),
        template_words=Overlap.of(_words(a), _words(b)),
        catchphrases=Overlap.of({fold(c) for c in a.catchphrases}, {fold(c) for c in b.catchphrases}),
        mean_template_chars=(
            _mean(len(t.text.raw) for t in a.templates),
            _mean(len(t.text.raw) for t in b.templates),
        ),
    )


def _mean(values: Any) -> float:
    items = list(values)
    return round(math.fsum(items) / len(items), 1) if items else 0.0
