"""The offline moderation backend: a Czech + English lexicon and rule classifier.

What it is, honestly: no model, no learning. A hand-written lexicon (``data/lexicon.yaml``)
groups words and phrases into *concepts* (an insult, a protected group, a harm verb in the
first person, a how-to framing...), and *rules* score a category when their concepts occur
within a few tokens of each other ("protected group + dehumanising word" → hate). Scores
are noisy-OR combinations of hand-set rule weights — ranks, not calibrated probabilities.
It catches explicit harm said in so many words; it misses paraphrase, irony that inverts a
statement, coded language, misspellings beyond the simple ones, and every language but
Czech and English. ``talklike moderate eval`` measures how well it does on the labelled
set shipped beside the lexicon.

Matching is built for Czech:

- **diacritics-insensitive**: text is case-folded, decomposed (NFKD) and stripped of
  combining marks, so "zloděj", "zlodej" and "ZLODĚJ" are one word; stretched letters
  ("kampááááň", "fuuuck") are collapsed;
- **inflection-aware**: a lexicon entry ``zlodej+noun`` is a stem with the endings of a
  declension class, so "zloděj", "zloději", "zlodějů", "zlodějům" all match; ``zabi*`` is
  a prefix for verbs ("zabít", "zabiju", "zabili");
- **context rules**: a rule fires only when its concepts are near each other, and
  dampeners lower it — a negation before a threat, a figurative frame ("nás zabíjí
  regulacemi"), counter-speech ("to je rasismus"), history, sex education, help-seeking.
  Political targets (Brusel, novináři, opozice, the government) are not protected groups:
  "Brusel nám krade", "novináři jsou zkorumpovaní" or "to je kampaň!" — the satire of the
  babis persona — stay well under every threshold, while the same words said of a
  protected group are hate.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from talklike.moderation.categories import CATEGORY_SET, Scores

LEXICON_RESOURCE = "lexicon.yaml"
_STRETCH = re.compile(r"([a-z])\1{2,}")
_MARKS = re.compile("[\u0300-\u036f]+")
_TOKEN = re.compile(r"[^\W_]+")
_AGE_TOKEN = re.compile(r"^(\d{1,2})(lete|leta|lety|letou|letym|leteho|letemu|letych|yo|yr|yrs)$")
_AGE_WORDS = frozenset({"let", "lete", "leta", "lety", "letou", "year", "years", "yr", "yrs", "yo"})
#: Ages that make a person a minor in the "minor" concept.
_MINOR_AGES = range(1, 18)
#: Prefix entries are indexed by their first letters (every prefix has at least this many).
_PREFIX_KEY = 3

#: Where a concept occurs: (first token, last token).
Span = tuple[int, int]


def normalize(text: str) -> str:
    """Case-folded, diacritics stripped, runs of 3+ equal letters collapsed to one."""
    folded = text.casefold()
    if not folded.isascii():
        # NFKD splits "ě" into "e" + U+030C; the combining marks (U+0300..U+036F) are dropped.
        folded = _MARKS.sub("", unicodedata.normalize("NFKD", folded))
    return _STRETCH.sub(r"\1", folded)


def tokenize(text: str) -> list[str]:
    """The normalized word tokens of ``text`` (letters and digits; punctuation splits)."""
    return _TOKEN.findall(normalize(text))


class LexiconError(ValueError):
    """The lexicon file is malformed (a bug in talklike, caught by the unit tests)."""


@dataclass(frozen=True)
class Element:
    """One word slot of a lexicon entry: exact forms, prefixes ("zabi*") or suffixes ("*t")."""

    forms: frozenset[str]
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()

    def matches(self, token: str) -> bool:
        return (
            token in self.forms
            or (bool(self.prefixes) and token.startswith(self.prefixes))
            or (bool(self.suffixes) and len(token) >= 4 and token.endswith(self.suffixes))
        )


@dataclass(frozen=True)
class Phrase:
    """An entry of several words, indexed by its first word: the concept and the words after it."""

    concept: int
    rest: tuple[Element, ...]


@dataclass(frozen=True)
class Dampener:
    """Multiply a rule's scores by ``factor`` when ``concept`` occurs (near the match, or anywhere)."""

    concept: int
    factor: float
    #: Tokens around the match to look in; None = anywhere in the text.
    near: int | None
    #: Categories it applies to; empty = all of the rule's.
    categories: frozenset[str]


@dataclass(frozen=True)
class Rule:
    """Concepts that, near each other, are evidence for categories with weights."""

    id: str
    label: str
    concepts: tuple[int, ...]
    window: int
    ordered: bool
    min_count: int
    scores: tuple[tuple[str, float], ...]
    dampeners: tuple[Dampener, ...]


@dataclass(frozen=True)
class Lexicon:
    """The compiled lexicon: what each word starts, and the rules by their first concept.

    ``words`` maps a form to the concepts it is on its own; ``phrases`` maps a first word to
    the phrases it may start; ``prefixes`` maps the first ``_PREFIX_KEY`` letters to the
    (prefix, concepts) pairs that begin so — one dict lookup per token instead of one per
    prefix length.
    """

    version: str
    concept_names: tuple[str, ...]
    words: dict[str, tuple[int, ...]]
    phrases: dict[str, tuple[Phrase, ...]]
    prefixes: dict[str, tuple[tuple[str, tuple[int, ...], tuple[Phrase, ...]], ...]]
    rules: tuple[Rule, ...]
    rules_by_first: dict[int, tuple[Rule, ...]]
    minor_concept: int | None

    def concept(self, name: str) -> int:
        return self.concept_names.index(name)


def _element(word: str, endings: dict[str, tuple[str, ...]], where: str, first: bool) -> Element:
    if word.startswith("*"):
        # "*t": any word of 4+ letters ending so (Czech infinitives); only after a fixed first word.
        if first:
            raise LexiconError(f"{where}: a suffix pattern {word!r} cannot start an entry")
        return Element(frozenset(), (), (word[1:],))
    if word.endswith("*"):
        stem = word[:-1]
        if len(stem) < _PREFIX_KEY:
            raise LexiconError(f"{where}: prefix {word!r} is shorter than {_PREFIX_KEY} letters")
        return Element(frozenset(), (stem,))
    if "+" in word:
        stem, _, cls = word.partition("+")
        if cls not in endings:
            raise LexiconError(f"{where}: unknown ending class {cls!r} in {word!r}")
        return Element(frozenset(stem + e for e in endings[cls]))
    return Element(frozenset({word}))


def _check_normalized(word: str, where: str) -> None:
    bare = word.strip("*").partition("+")[0]
    if normalize(bare) != bare or not _TOKEN.fullmatch(bare):
        raise LexiconError(f"{where}: {word!r} must be written normalized (lowercase, no diacritics)")


def compile_lexicon(data: dict[str, Any]) -> Lexicon:
    """Build the indexes from the lexicon's parsed YAML; every mistake raises LexiconError."""
    endings: dict[str, tuple[str, ...]] = {
        name: tuple("" if e == "-" else e for e in str(spec).split())
        for name, spec in (data.get("endings") or {}).items()
    }
    concepts_raw: dict[str, str] = data.get("concepts") or {}
    names = tuple(concepts_raw)
    index = {name: i for i, name in enumerate(names)}
    words: dict[str, set[int]] = {}
    phrases: dict[str, list[Phrase]] = {}
    prefix_words: dict[str, set[int]] = {}
    prefix_phrases: dict[str, list[Phrase]] = {}
    seen: set[tuple[str, str]] = set()
    for name, spec in concepts_raw.items():
        entries = [e.strip() for e in str(spec).replace("\n", " ").split(",") if e.strip()]
        if not entries:
            raise LexiconError(f"concept {name!r} has no entries")
        for raw in entries:
            parts = raw.split()
            where = f"concept {name!r}"
            for word in parts:
                _check_normalized(word, where)
            key = (name, " ".join(parts))
            if key in seen:
                continue  # listed twice (a word in both languages' lines)
            seen.add(key)
            elements = [_element(w, endings, where, k == 0) for k, w in enumerate(parts)]
            first, rest = elements[0], tuple(elements[1:])
            concept = index[name]
            for form in first.forms:
                if rest:
                    phrases.setdefault(form, []).append(Phrase(concept, rest))
                else:
                    words.setdefault(form, set()).add(concept)
            for prefix in first.prefixes:
                if rest:
                    prefix_phrases.setdefault(prefix, []).append(Phrase(concept, rest))
                else:
                    prefix_words.setdefault(prefix, set()).add(concept)
    by_key: dict[str, list[tuple[str, tuple[int, ...], tuple[Phrase, ...]]]] = {}
    for prefix in sorted(set(prefix_words) | set(prefix_phrases)):
        by_key.setdefault(prefix[:_PREFIX_KEY], []).append(
            (prefix, tuple(sorted(prefix_words.get(prefix, ()))), tuple(prefix_phrases.get(prefix, ())))
        )
    rules = [_rule(raw_rule, i, index, data) for i, raw_rule in enumerate(data.get("rules") or [])]
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise LexiconError("rule ids must be unique")
    by_first: dict[int, list[Rule]] = {}
    for rule in rules:
        by_first.setdefault(rule.concepts[0], []).append(rule)
    return Lexicon(
        version=str(data.get("version", "unversioned")),
        concept_names=names,
        words={k: tuple(sorted(v)) for k, v in words.items()},
        phrases={k: tuple(v) for k, v in phrases.items()},
        prefixes={k: tuple(v) for k, v in by_key.items()},
        rules=tuple(rules),
        rules_by_first={k: tuple(v) for k, v in by_first.items()},
        minor_concept=index.get("minor"),
    )


def _rule(raw: dict[str, Any], position: int, index: dict[str, int], data: dict[str, Any]) -> Rule:
    where = f"rule {raw.get('id', position)!r}"
    concept_names = [c.strip() for c in str(raw.get("when", "")).split("+")]
    for c in concept_names:
        if c not in index:
            raise LexiconError(f"{where}: unknown concept {c!r}")
    scores = tuple((str(k), float(v)) for k, v in (raw.get("scores") or {}).items())
    if not scores:
        raise LexiconError(f"{where}: no scores")
    for category, weight in scores:
        if category not in CATEGORY_SET or not 0 < weight <= 1:
            raise LexiconError(f"{where}: bad score {category!r}: {weight}")
    dampeners = [_dampener(d, index, where) for d in raw.get("unless") or []]
    dampeners += [_dampener(d, index, "context") for d in data.get("context") or []]
    rule_categories = {c for c, _ in scores}
    return Rule(
        id=str(raw["id"]),
        label=str(raw["label"]),
        concepts=tuple(index[c] for c in concept_names),
        window=int(raw.get("window", 4)),
        ordered=bool(raw.get("ordered", False)),
        min_count=int(raw.get("min_count", 1)),
        scores=scores,
        # Only dampeners that touch one of the rule's categories are kept.
        dampeners=tuple(d for d in dampeners if not d.categories or d.categories & rule_categories),
    )


def _dampener(raw: dict[str, Any], index: dict[str, int], where: str) -> Dampener:
    name = str(raw.get("concept", ""))
    if name not in index:
        raise LexiconError(f"{where}: dampener names unknown concept {name!r}")
    factor = float(raw["factor"])
    if not 0 <= factor < 1:
        raise LexiconError(f"{where}: dampener factor must be in [0, 1), got {factor}")
    categories = frozenset(str(c) for c in raw.get("categories") or ())
    unknown = categories - CATEGORY_SET
    if unknown:
        raise LexiconError(f"{where}: unknown categories {sorted(unknown)}")
    near = raw.get("near")
    return Dampener(index[name], factor, None if near is None else int(near), categories)


@cache
def default_lexicon() -> Lexicon:
    """The shipped lexicon, compiled once per process."""
    text = resources.files("talklike.moderation").joinpath("data", LEXICON_RESOURCE).read_text("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return compile_lexicon(yaml.load(text, Loader=loader))


def _phrase_spans(
    phrases: Sequence[Phrase], tokens: Sequence[str], i: int, found: dict[int, list[Span]]
) -> None:
    # Written out (no generator, no any()): this loop runs for every token that starts a phrase.
    count = len(tokens)
    for phrase in phrases:
        rest = phrase.rest
        end = i + len(rest)
        if end >= count:
            continue
        k = i + 1
        for el in rest:
            tok = tokens[k]
            if (
                tok in el.forms
                or (el.prefixes and tok.startswith(el.prefixes))
                or (el.suffixes and len(tok) >= 4 and tok.endswith(el.suffixes))
            ):
                k += 1
                continue
            break
        else:
            found.setdefault(phrase.concept, []).append((i, end))


class LocalClassifier:
    """Scores texts with a compiled lexicon. Pure CPU, thread-safe (no state between texts)."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon or default_lexicon()

    @property
    def model(self) -> str:
        """The lexicon's version, reported as the backend's model."""
        return self.lexicon.version

    def occurrences(self, tokens: Sequence[str]) -> dict[int, list[Span]]:
        """Every concept found in ``tokens``, with its spans in token order."""
        lex = self.lexicon
        words, phrases, prefixes = lex.words, lex.phrases, lex.prefixes
        found: dict[int, list[Span]] = {}
        for i, token in enumerate(tokens):
            concepts = words.get(token)
            if concepts:
                for concept in concepts:
                    found.setdefault(concept, []).append((i, i))
            starts = phrases.get(token)
            if starts:
                _phrase_spans(starts, tokens, i, found)
            if len(token) >= _PREFIX_KEY:
                group = prefixes.get(token[:_PREFIX_KEY])
                if group:
                    for prefix, prefix_concepts, prefix_phrases in group:
                        if token.startswith(prefix):
                            for concept in prefix_concepts:
                                found.setdefault(concept, []).append((i, i))
                            if prefix_phrases:
                                _phrase_spans(prefix_phrases, tokens, i, found)
            if token[0].isdigit() and lex.minor_concept is not None:
                self._age(tokens, i, lex.minor_concept, found)
        return found

    @staticmethod
    def _age(tokens: Sequence[str], i: int, minor: int, found: dict[int, list[Span]]) -> None:
        """ "13letá", "12 let", "13 year old": an age under 18 is a minor."""
        token = tokens[i]
        match = _AGE_TOKEN.match(token)
        if match:
            age, end = int(match.group(1)), i
        elif token.isdigit() and i + 1 < len(tokens) and tokens[i + 1] in _AGE_WORDS:
            age, end = int(token), i + 1
        else:
            return
        if age in _MINOR_AGES:
            found.setdefault(minor, []).append((i, end))

    @staticmethod
    def _match(rule: Rule, found: dict[int, list[Span]]) -> Span | None:
        """The span where the rule's concepts occur within its window, or None."""
        firsts = found[rule.concepts[0]]
        if len(rule.concepts) == 1:
            if rule.min_count <= 1:
                return firsts[0]
            distinct = sorted({start for start, _ in firsts})
            need = rule.min_count - 1
            for k in range(len(distinct) - need):
                if distinct[k + need] - distinct[k] <= rule.window:
                    return distinct[k], distinct[k + need]
            return None
        for anchor in firsts:
            a_start = anchor[0]
            start, end, last = anchor[0], anchor[1], anchor[1]
            for concept in rule.concepts[1:]:
                best: Span | None = None
                for occ in found[concept]:
                    if rule.ordered:
                        if occ[0] <= last or occ[0] - a_start > rule.window:
                            continue
                    elif abs(occ[0] - a_start) > rule.window or occ == anchor:
                        continue  # one word is not two pieces of evidence ("negr": group and slur)
                    if best is None or abs(occ[0] - a_start) < abs(best[0] - a_start):
                        best = occ
                if best is None:
                    break
                start, end, last = min(start, best[0]), max(end, best[1]), best[1]
            else:
                return start, end
        return None

    @staticmethod
    def _factor(rule: Rule, category: str, span: Span, found: dict[int, list[Span]]) -> float:
        factor = 1.0
        for d in rule.dampeners:
            if d.categories and category not in d.categories:
                continue
            hits = found.get(d.concept)
            if not hits:
                continue
            if d.near is None or any(e >= span[0] - d.near and s <= span[1] + d.near for s, e in hits):
                factor *= d.factor
        return factor

    def classify(self, text: str) -> Scores:
        """The 13 category scores of one text, with the reasons (rules that fired)."""
        tokens = tokenize(text)
        found = self.occurrences(tokens)
        if not found:
            return _EMPTY
        misses: dict[str, float] = {}
        reasons: list[str] = []
        present = found.keys()
        for concept in list(present):
            for rule in self.lexicon.rules_by_first.get(concept, ()):
                if not all(c in present for c in rule.concepts):
                    continue
                span = self._match(rule, found)
                if span is None:
                    continue
                fired: list[str] = []
                for category, weight in rule.scores:
                    w = weight * self._factor(rule, category, span, found)
                    if w <= 0:
                        continue
                    misses[category] = misses.get(category, 1.0) * (1.0 - w)
                    fired.append(f"{category} {w:.2f}")
                if fired:
                    words = " ".join(tokens[span[0] : span[1] + 1])
                    if len(words) > 80:
                        words = words[:77] + "..."
                    reasons.append(f"{rule.label} ({words}) → {', '.join(fired)}")
        if not misses:
            return _EMPTY
        scores = {category: round(1.0 - miss, 4) for category, miss in misses.items()}
        return Scores.of(scores, None, tuple(reasons))

    def classify_many(self, texts: Sequence[str]) -> list[Scores]:
        """``classify`` for each text, in order."""
        return [self.classify(text) for text in texts]


_EMPTY = Scores.of({})


class LocalBackend:
    """The ``local`` backend: the classifier behind the backend protocol (runs off the event loop)."""

    name = "local"

    def __init__(self, classifier: LocalClassifier | None = None, chunk: int = 2000) -> None:
        self.classifier = classifier or LocalClassifier()
        self.chunk = chunk

    @property
    def model(self) -> str:
        return self.classifier.model

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        """Scores in order; large batches run in chunks in a worker thread so the server stays responsive."""
        if len(texts) <= 64:
            return self.classifier.classify_many(texts)
        out: list[Scores] = []
        for start in range(0, len(texts), self.chunk):
            out.extend(
                await asyncio.to_thread(self.classifier.classify_many, texts[start : start + self.chunk])
            )
        return out
