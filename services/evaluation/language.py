"""A small, explainable language check: is an answer in the persona's language?

The benchmark only needs to tell "answered in Czech" from "answered in English (or
gibberish)", which the base model does for Czech questions. A stop-word and diacritics
count does that reliably on sentences, needs no model, and its verdict can be explained
by pointing at the words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)

#: Letters that occur in Czech (and Slovak) but not in English.
CZECH_LETTERS = frozenset("áčďéěíňóřšťúůýž")

STOP_WORDS: dict[str, frozenset[str]] = {
    "cs": frozenset(
        """a aby ale ani ano asi až bez by byl byla bylo byli být co či daleko dnes do ho i já jak jako je
        jeho jej její jen jenom ještě jsem jsi jsme jste jsou k kde kdo když ke který která které
        kteří mě mi mne mně moc my na nad nám nás ne nebo než nic nikdo no o od on ona oni ono
        pak po pod pro proč protože při s se si so sme tak taky také tam ten tento teď to toho
        tom tu ty u už v ve vás vám vy z za ze že všechno všichni voni vono jo furt prostě teda
        neni nejsem nevím žádný žádná lidi lidem""".split()
    ),
    "en": frozenset(
        """a about after all also an and any are as at be because been but by can could did do
        does for from had has have he her his how i if in into is it its just like me more my no
        not of on one or our out so some than that the their them then there they this to up us
        very was we were what when which who will with would you your""".split()
    ),
}


def fold(text: str) -> str:
    """Lower-case and strip diacritics, for matching that ignores how a word is accented."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The words of ``text`` (letters only), lower-cased."""
    return [w.lower() for w in WORD_RE.findall(text)]


@dataclass(frozen=True)
class LanguageVerdict:
    """How much of a text looks like the target language, and why."""

    share: float  # evidence for the target language / all language evidence, 0..1
    target_hits: int
    other_hits: int
    is_target: bool


def language_share(text: str, language: str, threshold: float = 0.6) -> LanguageVerdict:
    """Share of language evidence in ``text`` that points to ``language`` (``cs`` or ``en``).

    Evidence is a stop word of a language, or (for Czech) a word with a Czech-only letter.
    A text with no evidence at all (gibberish, numbers) counts as not in the language.
    """
    own = STOP_WORDS.get(language, frozenset())
    others = frozenset().union(*(ws for lang, ws in STOP_WORDS.items() if lang != language))
    ambiguous = own & others  # "a", "i", "no", "to": words both languages use say nothing
    target = other = 0
    for word in words(text):
        if word in ambiguous:
            continue
        czech_letters = any(ch in CZECH_LETTERS for ch in word)
        if word in own or (language == "cs" and czech_letters):
            target += 1
        elif word in others or (language != "cs" and czech_letters):
            other += 1
    total = target + other
    share = target / total if total else 0.0
    return LanguageVerdict(share=share, target_hits=target, other_hits=other, is_target=share >= threshold)
