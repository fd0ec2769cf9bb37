"""Topic relevance: does the answer talk about what it was asked?

Every question has a topic (a value of the pack's topic placeholder: "inflace", "státní
dluh"). An answer is relevant when
1. it names the topic: every word of the topic matches a word of the answer, where a topic
   word's variants are its forms in the nominative and in every case the pack declares
   (placeholders.yaml ``declensions:``; without them the nominative only), and an answer word
   matches a variant when it equals it or shares its first ``STEM_CHARS`` (5) letters with it
   (all folded: lower case, no diacritics), or, for a word of exactly 5 letters, its first 4
   (its last letter is an ending: "kauza" → "kauze", "dluhy" → "dluhů", "úroky" →
   "úrokových"). The case forms cover Czech inflection exactly
   ("válka" → "válku", "válkou"; "daně" → "daní"), the 5-letter stem covers derived words
   ("inflace" → "inflační", "migrace" → "migranty", "klima" → "klimatu"). Every word must
   match so that "státní dluh" is not met by "státní rozpočet";
2. or it shares a content word with the question: a question word of 5+ letters that is not a
   stop word, interview boilerplate ("podle", "myslíte", "pane", "česká": every question here
   is about the Czech state, and the persona says "lidi z České televize") or the persona's
   name, matched by the same stem rule ("Brusel" → "Bruselu"). Free-form questions often ask about a
   topic in their own words ("penze" for "důchody"); this route credits an answer that takes
   them up.
Words under 5 letters never stem-match: four letters are too few for a Czech stem ("cena" vs
"cenzura"), they match only as declared forms. The signature's words are left out of the
answer and the question in any case (every signed answer would otherwise "mention" a question
that says "pane Babiši").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from talklike.evaluation.language import STOP_WORDS, fold, words

STEM_CHARS = 5

#: Interview words of 5+ letters that say nothing about the subject (folded).
BOILERPLATE: dict[str, frozenset[str]] = {
    "cs": frozenset(
        fold(w)
        for w in """podle myslíte myslite vašeho vašem vašich vaší vaše vlastně opravdu skutečně
        můžete mohl mohla mohli byste bychom měli mělo měla měl předsedo premiére pane
        jednoznačně konkrétní konkrétně tématu témata tématem otázka otázku názor postoj
        souhlasíte tvrdí vidíte vnímáte říkáte řekněte chcete chtěl chtěla udělal udělala
        uděláte dneska znovu nějak nějakou nějaký nějaké kterou kterým kterých jejich proto
        protože všechno všichni která které který kteří jenom prostě nevím žádný žádná tento
        takže když tedy také ještě kolik jakou jakým jakého jakých jakém jakými říká říkají
        říkal říkali česko česku česká české český českou českých českým českého českému
        českém""".split()
    ),
    "en": frozenset(
        """about would should could think there their which where these those what when your
        yours really actually mister minister""".split()
    ),
}


@dataclass(frozen=True)
class Relevance:
    """Whether an answer is relevant, and the word that made it so (for the report)."""

    relevant: bool
    reason: str


def stem_match(a: str, b: str) -> bool:
    """Equal, or the same stem: both ``STEM_CHARS`` letters or longer and (folded input) sharing
    their first ``STEM_CHARS``, or one exactly ``STEM_CHARS`` long and sharing all but its last.

    Read on four demo runs' 376 tuned answers: the 5-letter rule alone missed "kauze" for
    "Kauza", "dluhů" for "dluhy", "úrokových" for "úroky", "školu" for "školy" (12 answers on
    topic); the 4-letter stem of a 5-letter word finds them, and one wrongly: "platí" for "platům".
    """
    if a == b:
        return True
    if len(a) < STEM_CHARS or len(b) < STEM_CHARS:
        return False
    short, long_ = sorted((a, b), key=len)
    return long_.startswith(short[: STEM_CHARS - 1] if len(short) == STEM_CHARS else short[:STEM_CHARS])


def topic_variants(topic: str, forms: Iterable[str]) -> list[set[str]]:
    """Per word of ``topic``, its folded variants from the declared ``forms``.

    Forms with more words than the topic carry a preposition ("s inflací"): their last words
    are the bare form, so they are aligned from the end.
    """
    base = words(fold(topic))
    variants = [{w} for w in base]
    for form in forms:
        form_words = words(fold(form))
        if len(form_words) >= len(base):
            for position, word in enumerate(form_words[len(form_words) - len(base) :]):
                variants[position].add(word)
    return variants


def content_words(text: str, language: str) -> list[str]:
    """Folded words of 5+ letters that are neither stop words nor interview boilerplate."""
    stop = {fold(w) for w in STOP_WORDS.get(language, frozenset())} | BOILERPLATE.get(language, frozenset())
    return [w for w in words(fold(text)) if len(w) >= STEM_CHARS and w not in stop]


@dataclass(frozen=True)
class TopicChecker:
    """Relevance of answers for one pack: its language, signature and topics' case forms."""

    language: str
    signature: str
    #: topic value → its declared case forms (nominative not required: the topic itself is one).
    topic_forms: Mapping[str, Sequence[str]]

    def check(self, answer: str, question: str, topic: str) -> Relevance:
        """Is ``answer`` about ``topic`` or about a content word of ``question``? See the module doc."""
        signature = words(fold(self.signature))

        def persona_name(word: str) -> bool:  # "Babiš", "Babiši", "Babiše": the signature in any case
            return word in signature or any(word.startswith(s) for s in signature if len(s) >= 4)

        said = [w for w in words(fold(answer)) if not persona_name(w)]
        if topic:
            variants = topic_variants(topic, self.topic_forms.get(topic, ()))
            if variants and all(any(stem_match(w, v) for w in said for v in vs) for vs in variants):
                return Relevance(True, f"topic: {topic}")
        for word in content_words(question, self.language):
            if persona_name(word):
                continue
            if any(stem_match(w, word) for w in said):
                return Relevance(True, f"question word: {word}")
        return Relevance(False, "")
