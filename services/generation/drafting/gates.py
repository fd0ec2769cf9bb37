"""The quality gates a draft passes before it becomes a pack, and the arithmetic of the plan.

Duplicates are judged twice over: by the generator's own keys (``dedupe``: exact, same text
once case/diacritics/punctuation are folded, same words in another order), and by word-set
similarity, because an LLM asked for "different" templates often changes one word of an
earlier one ("...and {rival} knows it" / "...and {rival} knew it"). Two templates whose
folded word sets overlap by ``NEAR_JACCARD`` or more teach the same sentence twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from talklike.common.errors import FailedPrecondition
from talklike.generation.dedupe import DuplicateIndex, fold, near_keys
from talklike.generation.engine import AnswerGenerator
from talklike.packs.loader import Pack

#: The fewest templates a draft may end with (the smallest request).
MIN_TEMPLATES = 10
MAX_TEMPLATES = 5000
#: Word-set overlap (Jaccard) from which two templates count as near duplicates.
NEAR_JACCARD = 0.8
#: Answers the generation check draws from a finished draft.
SMOKE_ANSWERS = 20


def default_style_count(templates: int) -> int:
    """Styles for a pack of ``templates``: 2 for tiny packs, up to 5 (the seed's count) for big ones."""
    if templates < 30:
        return 2
    if templates < 100:
        return 3
    if templates < 300:
        return 4
    return 5


def topic_count(templates: int) -> int:
    """Topics to ask for: more templates need more subjects to stay varied."""
    return min(30, max(8, templates // 15))


def value_count(templates: int) -> int:
    """Values to ask for per placeholder."""
    return min(20, max(6, templates // 40))


def question_count(templates: int) -> int:
    """Question templates to ask for."""
    return min(60, max(6, math.ceil(templates / 8)))


def quotas(total: int, styles: list[str]) -> dict[str, int]:
    """``total`` split over ``styles`` as evenly as integers allow (earlier styles get the rest)."""
    base, rest = divmod(total, len(styles))
    return {s: base + (1 if i < rest else 0) for i, s in enumerate(styles)}


def batch_budget(quota: int, per_call: int) -> int:
    """Calls one style may spend on its quota: twice what a perfect model needs, plus two."""
    return 2 * math.ceil(quota / per_call) + 2


def _words(text: str) -> frozenset[str]:
    return frozenset(fold(text).split())


@dataclass
class TextIndex:
    """Kept texts, to refuse exact and near duplicates of them with a reason naming the kept one."""

    keys: DuplicateIndex = field(default_factory=DuplicateIndex)
    _sets: list[tuple[frozenset[str], str]] = field(default_factory=list)

    def reason(self, text: str) -> str:
        """Why ``text`` repeats a kept text ("" when it does not)."""
        why, _keys = self.keys.check(text)
        if why:
            return why
        words = _words(text)
        size = len(words)
        if not size:
            return ""
        for kept, label in self._sets:
            other = len(kept)
            # Jaccard >= t needs min/max >= t: most pairs are skipped on their sizes alone.
            if min(size, other) < NEAR_JACCARD * max(size, other):
                continue
            shared = len(words & kept)
            if shared >= NEAR_JACCARD * (size + other - shared):
                return f"near duplicate of {label} ({shared} of {size + other - shared} words shared)"
        return ""

    def add(self, text: str, label: str) -> None:
        """Keep ``text`` under ``label``."""
        self.keys.add(text, near_keys(text), label)
        self._sets.append((_words(text), label))

    def __len__(self) -> int:
        return len(self._sets)


def slip_rules(fillers: list[str]) -> list[dict[str, str]]:
    """Slip rules for any language: hesitation fillers from the LLM plus two generic slips.

    Every rule anchored at ``^`` or ``$`` can slip any answer (the pack format asks for such
    rules); the rest make the slips varied.
    """
    rules: list[dict[str, str]] = []
    for number, filler in enumerate(fillers[:4], start=1):
        text = filler.strip(" ,.").replace("\\", r"\\")
        if not text:
            continue
        opener = text[0].upper() + text[1:]
        rules.append(
            {
                "id": f"filler-{number}",
                "description": f"Starts with the hesitation {filler!r}.",
                "find": "^",
                "replace": f"{opener}, ",
            }
        )
        rules.append(
            {
                "id": f"filler-{number}-mid",
                "description": f"{filler!r} after the first comma.",
                "find": ", ",
                "replace": f", {text}, ",
            }
        )
    rules.append(
        {
            "id": "stutter",
            "description": "The first word said twice.",
            "find": r"^(\w+)",
            "replace": r"\1, \1",
        }
    )
    rules.append(
        {
            "id": "no-final-stop",
            "description": "The last full stop forgotten.",
            "find": r"\.$",
            "replace": "",
        }
    )
    return rules


def pack_problems(pack: Pack, requested: int) -> list[str]:
    """What keeps a loaded draft from being a pack (the loader's own checks already passed)."""
    problems: list[str] = []
    if len(pack.templates) < MIN_TEMPLATES:
        problems.append(
            f"only {len(pack.templates)} usable templates of {requested} asked for; "
            f"a pack needs at least {MIN_TEMPLATES}"
        )
    index = TextIndex()
    for template in pack.templates:
        if not template.text.names:
            problems.append(f"template {template.id} uses no placeholder")
        why = index.reason(template.text.raw)
        if why:
            problems.append(f"template {template.id} is a {why}")
        index.add(template.text.raw, template.id)
    if not problems:
        try:
            AnswerGenerator(pack, 0, slip_probability=0.5, batch_size=SMOKE_ANSWERS).generate(
                min(SMOKE_ANSWERS, pack.combinations())
            )
        except FailedPrecondition as error:
            problems.append(f"the pack does not generate answers: {error}")
    return problems
