"""Loops: an answer that repeats itself until the token limit cuts it off.

"Válka! Válka! Válka! Válka! Válka! Válka!" and "A to je dalžka. A to je dalžka. A to je
dalžka." are what a degenerate model writes, and a reader calls them broken at once. An
answer loops when (over its lower-cased words, punctuation aside, the closing signature left
out: it is expected once and would dilute a short loop)
- one sequence of ``LOOP_NGRAM`` (4) words occurs ``MIN_REPEATS`` (3) or more times ("a to je
  dalžka" three times; "válka válka válka válka" three times in six "Válka!"), or
- it has at least ``MIN_WORDS`` (8) words and one word makes up more than ``MAX_WORD_SHARE``
  (30 %) of them.
Rhetoric repeats too, but differently. A catchphrase said twice ("já jsem … já jsem") or a
parallel "jako když … jako když" is two occurrences. A tricolon repeats a three-word frame
with a new word each time ("na zdravotnictví jsem expert, na ekonomiku jsem expert, na
zemědělství jsem expert", "za kůrovce může Babiš, za to, že prší, může Babiš"): three-word
sequences ×3 flagged 5 of 540 generated persona answers of the babis pack, four-word ones none,
because in a loop the whole period comes back, slot and all. In fluent answers of 8+ words even
"a", "to", "je" stay at or under 30 % (at most 30 % over those 540). Below 8 words the share rule
would flag emphasis ("Ne, ne a ne!" is 75 % "ne"), so a short answer loops only by the first rule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from talklike.evaluation.language import fold, words

MIN_WORDS = 8
LOOP_NGRAM = 4
MIN_REPEATS = 3
MAX_WORD_SHARE = 0.3


@dataclass(frozen=True)
class LoopVerdict:
    """Whether an answer loops, and the evidence: the repeated sequence or word."""

    is_loop: bool
    reason: str


def without_signature(tokens: list[str], signature: str) -> list[str]:
    """``tokens`` less a trailing signature (folded comparison)."""
    sig = words(fold(signature))
    if sig and [fold(t) for t in tokens[-len(sig) :]] == sig:
        return tokens[: -len(sig)]
    return tokens


def loop_verdict(text: str, signature: str = "") -> LoopVerdict:
    """Does ``text`` loop? See the module doc for the rule."""
    tokens = without_signature(words(text), signature)
    grams = Counter(tuple(tokens[i : i + LOOP_NGRAM]) for i in range(len(tokens) - LOOP_NGRAM + 1))
    if grams:
        gram, times = grams.most_common(1)[0]
        if times >= MIN_REPEATS:
            return LoopVerdict(True, f"“{' '.join(gram)}” ×{times}")
    if len(tokens) < MIN_WORDS:
        return LoopVerdict(False, "")
    word, count = Counter(tokens).most_common(1)[0]
    if count / len(tokens) > MAX_WORD_SHARE:
        return LoopVerdict(True, f"“{word}” is {count / len(tokens):.0%} of the words")
    return LoopVerdict(False, "")
