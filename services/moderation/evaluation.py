"""Precision and recall of a moderation backend on the labelled set shipped with talklike.

The set (``data/eval.jsonl``) was written for this project: Czech and English texts, each
labelled with the omni-moderation categories it belongs to (none for benign texts), in four
kinds — ``harmful``, ``benign``, ``hard-negative`` (idioms, news, counter-speech, history,
sex education, prevention: words that look harmful in texts that are not) and ``satire``
(the babis persona's political satire, which must not be flagged). Its ``split`` is ``dev``
for the texts the lexicon was tuned on and ``test`` for texts written after the last tuning
and never tuned on, so the test figures are the honest ones. (The first test split, once
measured, was tuned on and moved to ``dev`` as ``dev2-*``; a fresh ``test`` split replaced it.)

A category is *predicted* when the backend flags it (its own ``categories``, score ≥ 0.5 for
the local backend); the ``any`` rows compare "has any label" with "flagged" and with "violates
the policy's default thresholds" — the decision a dataset run makes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from talklike.common.errors import InvalidArgument
from talklike.moderation.categories import CATEGORIES, CATEGORY_SET, DEFAULT_THRESHOLDS

EVAL_RESOURCE = "eval.jsonl"
KINDS = ("harmful", "benign", "hard-negative", "satire")
LANGS = ("cs", "en")
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class LabelledText:
    """One text of the evaluation set."""

    id: str
    text: str
    lang: str
    kind: str
    split: str
    categories: frozenset[str]


def parse_set(lines: Iterable[str], source: str, field_name: str = "set") -> list[LabelledText]:
    """Parse and check the JSONL set; a malformed line raises InvalidArgument (``field_name``) naming it."""
    out: list[LabelledText] = []
    ids: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(line)
            labelled = LabelledText(
                id=str(row["id"]),
                text=str(row["text"]),
                lang=str(row["lang"]),
                kind=str(row["kind"]),
                split=str(row.get("split", "dev")),
                categories=frozenset(str(c) for c in row.get("categories", [])),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidArgument(field_name, f"{where}: not a labelled text ({error})") from error
        unknown = labelled.categories - CATEGORY_SET
        if unknown:
            raise InvalidArgument(field_name, f"{where}: unknown categories {sorted(unknown)}")
        if labelled.kind not in KINDS or labelled.lang not in LANGS or labelled.split not in SPLITS:
            raise InvalidArgument(
                field_name, f"{where}: kind, lang or split is not one of {KINDS}, {LANGS}, {SPLITS}"
            )
        if (labelled.kind == "harmful") != bool(labelled.categories):
            raise InvalidArgument(
                field_name, f"{where}: harmful texts have categories, other kinds have none"
            )
        if labelled.id in ids:
            raise InvalidArgument(field_name, f"{where}: duplicate id {labelled.id!r}")
        ids.add(labelled.id)
        out.append(labelled)
    return out


def load_set(path: Path | None = None, field_name: str = "set") -> list[LabelledText]:
    """The shipped set, or a file in the same format (a problem with it is InvalidArgument on ``field_name``)."""
    if path is None:
        text = resources.files("talklike.moderation").joinpath("data", EVAL_RESOURCE).read_text("utf-8")
        return parse_set(text.splitlines(), EVAL_RESOURCE)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument(field_name, f"cannot read {path}: {error}") from error
    return parse_set(text.splitlines(), str(path))


@dataclass
class Counts:
    """Confusion counts of one category."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, labelled: bool, predicted: bool) -> None:
        if labelled and predicted:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif labelled:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float | None:
        """None when nothing was predicted (undefined, not 0 or 1)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """None when nothing is labelled so."""
        return self.tp / self.support if self.support else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "support": self.support,
            "precision": self.precision,
            "recall": self.recall,
        }


@dataclass(frozen=True)
class Miss:
    """A text whose flags differ from its labels."""

    id: str
    text: str
    labels: list[str]
    flagged: list[str]
    missed: list[str]
    extra: list[str]


@dataclass
class EvalReport:
    """Per-category counts, the two ``any`` rows, and the texts that were wrong."""

    texts: int
    per_category: dict[str, Counts]
    any_flagged: Counts
    any_policy: Counts
    #: Benign, hard-negative and satire texts flagged or over the policy, by kind.
    false_alarms_by_kind: dict[str, int]
    kinds: dict[str, int]
    errors: list[Miss] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "categories": {name: c.as_dict() for name, c in self.per_category.items()},
            "any_flagged": self.any_flagged.as_dict(),
            "any_policy": self.any_policy.as_dict(),
            "false_alarms_by_kind": self.false_alarms_by_kind,
            "kinds": self.kinds,
            "errors": [asdict(e) for e in self.errors],
        }


def evaluate(
    texts: Sequence[LabelledText],
    flags: Sequence[Mapping[str, bool]],
    scores: Sequence[Mapping[str, float]],
    thresholds: Mapping[str, float] | None = None,
) -> EvalReport:
    """Compare each text's labels with the backend's flags (and its scores against the thresholds)."""
    if not (len(texts) == len(flags) == len(scores)):
        raise ValueError("one result per text is needed")
    limits = dict(thresholds or DEFAULT_THRESHOLDS)
    per = {name: Counts() for name in CATEGORIES}
    any_flagged, any_policy = Counts(), Counts()
    false_alarms = {kind: 0 for kind in KINDS if kind != "harmful"}
    kinds = {kind: 0 for kind in KINDS}
    errors: list[Miss] = []
    for item, flag, score in zip(texts, flags, scores, strict=True):
        kinds[item.kind] += 1
        predicted = {name for name in CATEGORIES if flag.get(name, False)}
        over = {name for name in CATEGORIES if score.get(name, 0.0) >= limits[name]}
        for name in CATEGORIES:
            per[name].add(name in item.categories, name in predicted)
        any_flagged.add(bool(item.categories), bool(predicted))
        any_policy.add(bool(item.categories), bool(over))
        if item.kind != "harmful" and over:
            false_alarms[item.kind] += 1
        if predicted != item.categories:
            errors.append(
                Miss(
                    id=item.id,
                    text=item.text,
                    labels=sorted(item.categories),
                    flagged=sorted(predicted),
                    missed=sorted(item.categories - predicted),
                    extra=sorted(predicted - item.categories),
                )
            )
    return EvalReport(len(texts), per, any_flagged, any_policy, false_alarms, kinds, errors)


def select(texts: Sequence[LabelledText], split: str = "", lang: str = "") -> list[LabelledText]:
    """The texts of one split and/or language ("" = all)."""
    if split and split not in SPLITS:
        raise InvalidArgument("split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
    if lang and lang not in LANGS:
        raise InvalidArgument("lang", f"must be one of {', '.join(LANGS)}, got {lang!r}")
    return [t for t in texts if (not split or t.split == split) and (not lang or t.lang == lang)]
