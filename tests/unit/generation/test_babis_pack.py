"""The built-in babis pack speaks natural Czech: topics in the case the sentence needs rather than
wrapped in "téma", journalist questions without that crutch, varied openers, and free-form
evaluation questions that no question template can produce."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from talklike.generation.engine import AnswerGenerator
from talklike.packs.loader import Pack, Text, load_pack

#: "téma {tema}", "k tématu {tema}", "s tématem {tema}"... wrapped around the topic.
CRUTCH = re.compile(r"\b(?:téma|tématu|tématem|tématech)\s+\{[Tt]ema[^}]*\}", re.IGNORECASE)
#: A preposition written before a case form: "s {tema_7p}" gives "s školstvím"; the pack
#: declares the vocalised forms ({tema_s7p} → "se školstvím") instead.
BARE_PREPOSITION = re.compile(r"(?<!\w)[sSkKzZvV] \{[Tt]ema_\w+\}")


@pytest.fixture(scope="module")
def pack() -> Pack:
    return load_pack("babis")


def crutch_share(texts: list[Text]) -> float:
    return sum(1 for t in texts if CRUTCH.search(t.raw)) / len(texts)


def test_the_tema_crutch_is_rare_in_answers_and_questions(pack: Pack) -> None:
    assert crutch_share([t.text for t in pack.templates]) <= 0.10
    assert crutch_share([q.text for q in pack.questions]) <= 0.10


def test_prepositions_come_vocalised_with_their_forms(pack: Pack) -> None:
    texts = [t.text.raw for t in pack.templates] + [q.text.raw for q in pack.questions]
    assert [t for t in texts if BARE_PREPOSITION.search(t)] == []
    assert pack.declensions["tema"]["školství"]["s7p"] == "se školstvím"
    assert pack.declensions["tema"]["kůrovec"]["k3p"] == "ke kůrovci"


def test_every_topic_is_declined_in_every_case(pack: Pack) -> None:
    table = pack.declensions["tema"]
    assert set(table) == set(pack.topics)
    cases = {"2p", "3p", "4p", "6p", "7p", "s7p", "k3p", "z2p"}
    assert all(set(forms) == cases for forms in table.values())


def test_opening_words_are_varied(pack: Pack) -> None:
    answers = AnswerGenerator(pack, 42).generate(600)
    openers = Counter(
        " ".join(re.findall(r"\w+", a.text.removesuffix("\n" + pack.signature).lower())[:3]) for a in answers
    )
    ((top, count),) = openers.most_common(1)
    assert count / len(answers) <= 0.05, (top, count)
    # an exclamation opener never dominates either
    exclamations = Counter(
        a.values["emotivni_vyraz"] for a in answers if a.text.startswith(a.values.get("emotivni_vyraz", "\0"))
    )
    assert max(exclamations.values()) / len(answers) <= 0.01


def test_freeform_questions_are_held_out_and_spread(pack: Pack) -> None:
    questions = pack.freeform_questions
    assert len(questions) >= 60
    assert len({q.topic for q in questions}) >= 30
    assert max(Counter(q.topic for q in questions).values()) <= 4
    assert len({q.text for q in questions}) == len(questions)
    # no question template, filled any way at all, gives a free-form question
    patterns = [
        re.compile("".join(re.escape(p) if i % 2 == 0 else ".+" for i, p in enumerate(q.text.parts)) + r"\Z")
        for q in pack.questions
    ]
    assert [f.id for f in questions if any(p.match(f.text) for p in patterns)] == []
