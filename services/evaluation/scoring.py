"""Scores of one answer and of a set of answers: does it talk like the persona?

Each score is simple enough to check by hand on a row of the report, because the point of
the benchmark is that a person believes it: which persona markers were found, whether the
signature ends the answer, how much of it is in the persona's language, how long it is,
and how varied the answers are as a whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from talklike.evaluation.language import fold, language_share, words

#: Markers shorter than this (after folding) match too much by accident ("no", "to").
MIN_MARKER_CHARS = 4


@dataclass(frozen=True)
class PersonaLexicon:
    """What identifies the persona in text: its signature, language and marker phrases."""

    signature: str
    language: str
    markers: tuple[str, ...]

    @classmethod
    def build(cls, signature: str, language: str, phrases: Iterable[str]) -> PersonaLexicon:
        """Fold, de-duplicate and keep the phrases long enough to be evidence.

        Placeholder values and catchphrases come in all shapes; folding (lower case, no
        diacritics) makes "Brusel" match "brusel" and "kampaň" match "kampan".
        """
        seen: dict[str, None] = {}
        for phrase in phrases:
            folded = " ".join(fold(phrase).split()).strip(" .,!?;:…\"'")
            if len(folded) >= MIN_MARKER_CHARS and folded != fold(signature):
                seen.setdefault(folded, None)
        return cls(signature=signature, language=language, markers=tuple(sorted(seen)))

    def pattern(self) -> re.Pattern[str]:
        """One regex matching any marker on word boundaries, longest first."""
        ordered = sorted(self.markers, key=len, reverse=True)
        return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(m) for m in ordered) + r")(?!\w)")


@dataclass(frozen=True)
class AnswerScores:
    """The scores of one answer."""

    markers_found: tuple[str, ...]
    marker_count: int
    has_signature: bool
    language_share: float
    in_language: bool
    words: int
    chars: int


@dataclass
class AnswerScorer:
    """Scores answers against one persona lexicon (compiled once)."""

    lexicon: PersonaLexicon
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = self.lexicon.pattern() if self.lexicon.markers else None

    def markers_in(self, text: str) -> set[str]:
        """The persona markers in ``text`` (folded forms)."""
        return set(self._pattern.findall(fold(text))) if self._pattern else set()

    def score(self, answer: str, question: str = "") -> AnswerScores:
        """Score one answer to ``question``.

        Markers the question already contains do not count: the held-out questions name their
        topic ("ceny energií", "Brusel"), which are pack vocabulary too, and a model that only
        echoes the question is not talking like the persona.
        """
        found = sorted(self.markers_in(answer) - self.markers_in(question))
        verdict = language_share(answer, self.lexicon.language)
        return AnswerScores(
            markers_found=tuple(found),
            marker_count=len(found),
            has_signature=ends_with_signature(answer, self.lexicon.signature),
            language_share=round(verdict.share, 4),
            in_language=verdict.is_target,
            words=len(words(answer)),
            chars=len(answer),
        )


def ends_with_signature(answer: str, signature: str) -> bool:
    """True when the last words of the answer are the signature (case, accents and punctuation aside)."""
    tail = words(fold(answer))
    sig = words(fold(signature))
    return bool(sig) and tail[-len(sig) :] == sig


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n over all texts: unique n-grams / all n-grams (0 when there are none).

    Low values mean the model repeats itself across answers, which fine-tuning on templates
    can cause; it is reported before vs after so that collapse is visible.
    """
    total = 0
    unique: set[tuple[str, ...]] = set()
    for text in texts:
        tokens = words(text)
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


def perplexity(total_logprob: float, token_count: int) -> float:
    """exp(-mean log-probability per token); infinite for no tokens."""
    if token_count <= 0:
        return math.inf
    return math.exp(-total_logprob / token_count)


@dataclass(frozen=True)
class SideSummary:
    """Aggregates over all answers of one side (base model or adapter)."""

    answers: int
    signature_rate: float
    marker_rate: float
    markers_per_answer: float
    language_rate: float
    mean_language_share: float
    mean_words: float
    distinct_1: float
    distinct_2: float


def summarize(answers: Sequence[str], scores: Sequence[AnswerScores]) -> SideSummary:
    """Aggregate per-answer scores: rates are shares of answers, 0..1."""
    count = len(scores)

    def mean(values: Iterable[float]) -> float:
        values = list(values)
        return sum(values) / len(values) if values else 0.0

    return SideSummary(
        answers=count,
        signature_rate=mean(float(s.has_signature) for s in scores),
        marker_rate=mean(float(s.marker_count > 0) for s in scores),
        markers_per_answer=mean(float(s.marker_count) for s in scores),
        language_rate=mean(float(s.in_language) for s in scores),
        mean_language_share=mean(s.language_share for s in scores),
        mean_words=mean(float(s.words) for s in scores),
        distinct_1=distinct_n(answers, 1),
        distinct_2=distinct_n(answers, 2),
    )
