"""Exact and near-duplicate detection for answers and examples.

Two examples that differ only in punctuation, letter case, diacritics, spacing or word
order teach a model the same thing twice; for fine-tuning they are duplicates. The keys here
are cheap (one normalisation and one sort per text), so the generator can check every
candidate at tens of thousands per second and draw a replacement for a rejected one, which
is how the requested count is still met.

- **exact**: the same text, byte for byte;
- **near**: the same text once case, diacritics, punctuation and whitespace are folded away
  (the "folded" key), or the same multiset of folded words in another order (the "words" key).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field


class _FoldTable(dict[int, str]):
    """``str.translate`` table computed per character on first sight: case folded, diacritics
    removed, and anything that is not a word character turned into a space.

    Translating through a cached table and splitting on whitespace runs in C, several times
    faster than normalising every text with ``unicodedata`` and a regular expression (Czech
    answers have a diacritic every few characters).
    """

    def __missing__(self, code: int) -> str:
        decomposed = unicodedata.normalize("NFKD", chr(code))
        folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
        mapped = "".join(ch if ch.isalnum() or ch == "_" else " " for ch in folded)
        self[code] = mapped
        return mapped


_FOLD = _FoldTable()


def translate(text: str) -> str:
    """``text`` with every character folded (not yet split into words).

    Folding works character by character, so ``translate(a + b) == translate(a) + translate(b)``:
    the generator folds each template part and each placeholder value once and joins them.
    """
    return text.translate(_FOLD)


def keys_of_translated(translated: str) -> tuple[str, str]:
    """The near keys from ``translate``'s output: folded text, and its words sorted."""
    words = translated.split()
    folded = " ".join(words)
    words.sort()
    return folded, " ".join(words)


def fold(text: str) -> str:
    """Lower case, no diacritics, punctuation and runs of whitespace as one space."""
    return " ".join(translate(text).split())


def near_keys(text: str) -> tuple[str, str]:
    """The two near-duplicate keys of ``text``: folded, and its folded words sorted."""
    return keys_of_translated(translate(text))


@dataclass
class DuplicateIndex:
    """Remembers what was kept and says why a new text would be a duplicate.

    ``check`` returns "" for a new text, else the reason, naming the kept item it repeats
    (by the label given to ``add``), so a rejection written to ``invalid/`` can be traced.
    """

    _exact: dict[str, str] = field(default_factory=dict)
    _folded: dict[str, str] = field(default_factory=dict)
    _words: dict[str, str] = field(default_factory=dict)

    def check(self, exact: str, near_source: str | None = None) -> tuple[str, tuple[str, str]]:
        """(reason or "", near keys) for ``exact``; near keys come from ``near_source`` if given."""
        keys = near_keys(near_source if near_source is not None else exact)
        return self.check_keys(exact, keys), keys

    def check_keys(self, exact: str, keys: tuple[str, str]) -> str:
        """The reason ``exact`` (with near ``keys`` computed by the caller) repeats a kept text, or ""."""
        kept = self._exact.get(exact)
        if kept is not None:
            return f"exact duplicate of {kept}"
        kept = self._folded.get(keys[0])
        if kept is not None:
            return f"near duplicate of {kept} (same text once case, diacritics and punctuation are ignored)"
        kept = self._words.get(keys[1])
        if kept is not None:
            return f"near duplicate of {kept} (the same words in another order)"
        return ""

    def add(self, exact: str, keys: tuple[str, str], label: str) -> None:
        """Remember a kept text under ``label``."""
        self._exact.setdefault(exact, label)
        self._folded.setdefault(keys[0], label)
        self._words.setdefault(keys[1], label)

    def __len__(self) -> int:
        return len(self._exact)
