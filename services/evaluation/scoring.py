"""Scores of one answer and of a set of answers: does it talk like the persona?

Each score is simple enough to check by hand on a row of the report, because the point of
the benchmark is that a person believes it: which persona markers were found, whether the
signature ends the answer, how much of it is in the persona's language, how long it is,
and how varied the answers are as a whole.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from talklike.evaluation.echo import copying
from talklike.evaluation.language import fold, language_share, words
from talklike.evaluation.loops import loop_verdict
from talklike.evaluation.realwords import RealWords
from talklike.evaluation.relevance import TopicChecker

#: Markers shorter than this (after folding) match too much by accident ("no", "to").
MIN_MARKER_CHARS = 4


@dataclass(frozen=True)
class PersonaLexicon:
    """What identifies the persona in text: its signature, language and marker phrases.

    ``topic_forms`` maps each topic value to its declared case forms (for topic relevance).
    """

    signature: str
    language: str
    markers: tuple[str, ...]
    topic_forms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        signature: str,
        language: str,
        phrases: Iterable[str],
        topic_forms: Mapping[str, tuple[str, ...]] | None = None,
    ) -> PersonaLexicon:
        """Fold, de-duplicate and keep the phrases long enough to be evidence.

        Placeholder values and catchphrases come in all shapes; folding (lower case, no
        diacritics) makes "Brusel" match "brusel" and "kampaň" match "kampan".
        """
        seen: dict[str, None] = {}
        for phrase in phrases:
            folded = " ".join(fold(phrase).split()).strip(" .,!?;:…\"'")
            if len(folded) >= MIN_MARKER_CHARS and folded != fold(signature):
                seen.setdefault(folded, None)
        return cls(
            signature=signature, language=language, markers=tuple(sorted(seen)), topic_forms=topic_forms or {}
        )

    def pattern(self) -> re.Pattern[str]:
        """One regex matching any marker on word boundaries, longest first."""
        ordered = sorted(self.markers, key=len, reverse=True)
        return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(m) for m in ordered) + r")(?!\w)")


@dataclass(frozen=True)
class AnswerScores:
    """The scores of one answer (each explained in the module that computes it)."""

    markers_found: tuple[str, ...]
    marker_count: int
    has_signature: bool
    language_share: float
    in_language: bool
    words: int
    chars: int
    #: realwords.py: share of words in the language's word list or the pack's vocabulary.
    real_word_share: float
    unknown_words: tuple[str, ...]
    not_language: bool
    #: loops.py
    loop: bool
    loop_reason: str
    #: relevance.py
    relevant: bool
    relevance_reason: str
    #: The first three words, lower-cased, punctuation aside (mode collapse: see ``opening``).
    opening: str
    #: echo.py: the share of words in runs copied from the prompt, and whether that is most of it.
    copied_share: float = 0.0
    copies_prompt: bool = False


@dataclass
class AnswerScorer:
    """Scores answers against one persona lexicon (compiled once)."""

    lexicon: PersonaLexicon
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False)
    _real: RealWords = field(init=False, repr=False)
    _topics: TopicChecker = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = self.lexicon.pattern() if self.lexicon.markers else None
        topics = [text for topic, forms in self.lexicon.topic_forms.items() for text in (topic, *forms)]
        self._real = RealWords(
            self.lexicon.language, [*self.lexicon.markers, self.lexicon.signature, *topics]
        )
        self._topics = TopicChecker(self.lexicon.language, self.lexicon.signature, self.lexicon.topic_forms)

    def markers_in(self, text: str) -> set[str]:
        """The persona markers in ``text`` (folded forms)."""
        return set(self._pattern.findall(fold(text))) if self._pattern else set()

    def score(self, answer: str, question: str = "", topic: str = "", prompt: str = "") -> AnswerScores:
        """Score one answer to ``question`` about ``topic``, asked with ``prompt`` (system + question).

        Markers the question already contains do not count: the held-out questions name their
        topic ("ceny energií", "Brusel"), which are pack vocabulary too, and a model that only
        echoes the question is not talking like the persona. Markers, topic and the real-word
        share are judged on the answer's own words: runs copied from the prompt (echo.py) are
        left out. An answer with no words of its own keeps the real-word share of what it copied
        (the copy is real language; it is flagged "copies the prompt" instead).
        """
        copied = copying(answer, prompt or question)
        found = sorted(self.markers_in(copied.own_text) - self.markers_in(question))
        verdict = language_share(answer, self.lexicon.language)
        real = self._real.share(copied.own_text if words(copied.own_text) else answer)
        loop = loop_verdict(answer, self.lexicon.signature)
        relevance = self._topics.check(copied.own_text, question, topic)
        return AnswerScores(
            markers_found=tuple(found),
            marker_count=len(found),
            has_signature=ends_with_signature(answer, self.lexicon.signature),
            language_share=round(verdict.share, 4),
            in_language=verdict.is_target,
            words=len(words(answer)),
            chars=len(answer),
            real_word_share=real.share,
            unknown_words=real.unknown,
            not_language=real.not_language,
            loop=loop.is_loop,
            loop_reason=loop.reason,
            relevant=relevance.relevant,
            relevance_reason=relevance.reason,
            opening=opening(answer),
            copied_share=copied.copied_share,
            copies_prompt=copied.copies_prompt,
        )


#: Words of an answer's opening compared for mode collapse.
OPENING_WORDS = 3


def opening(answer: str) -> str:
    """The first ``OPENING_WORDS`` words, lower-cased and without punctuation ("Já jsem to…" → "já jsem to")."""
    return " ".join(words(answer)[:OPENING_WORDS])


def top_opening(openings: Sequence[str]) -> tuple[str, int]:
    """The most common opening and how many answers start with it; the first seen wins a tie.

    Mode collapse: a fine-tuned model that starts most answers the same way ("já jsem to",
    whatever the question) has learned a template, not a voice. Empty answers have no opening.
    """
    counts = Counter(o for o in openings if o)
    if not counts:
        return "", 0
    return counts.most_common(1)[0]


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
    mean_real_word_share: float
    not_language_rate: float
    loop_rate: float
    relevance_rate: float
    copy_rate: float
    top_opening: str
    top_opening_share: float


def summarize(answers: Sequence[str], scores: Sequence[AnswerScores]) -> SideSummary:
    """Aggregate per-answer scores: rates are shares of answers, 0..1."""
    count = len(scores)
    first, starts = top_opening([s.opening for s in scores])

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
        mean_real_word_share=mean(s.real_word_share for s in scores),
        not_language_rate=mean(float(s.not_language) for s in scores),
        loop_rate=mean(float(s.loop) for s in scores),
        relevance_rate=mean(float(s.relevant) for s in scores),
        copy_rate=mean(float(s.copies_prompt) for s in scores),
        top_opening=first,
        top_opening_share=starts / count if count else 0.0,
    )
