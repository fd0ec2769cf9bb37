"""Topic relevance: the topic in any declared case, a derived word, or a content word of the question."""

from __future__ import annotations

import pytest
from talklike.evaluation.lexicon import lexicon_for_pack
from talklike.evaluation.relevance import TopicChecker, content_words, stem_match, topic_variants
from talklike.packs.loader import BUILTIN_PACKS_DIR

FORMS = {
    "válka": ("války", "válce", "válku", "válce", "válkou", "s válkou", "k válce", "z války"),
    "státní dluh": ("státního dluhu", "státnímu dluhu", "státní dluh", "státním dluhu", "státním dluhem"),
    "daně": ("daní", "daním", "daně", "daních", "daněmi", "s daněmi"),
}
CHECK = TopicChecker("cs", "Andrej Babiš", FORMS)


def test_topic_variants_align_prepositional_forms_from_the_end() -> None:
    assert topic_variants("válka", FORMS["válka"]) == [{"valka", "valky", "valce", "valku", "valkou"}]
    assert topic_variants("státní dluh", FORMS["státní dluh"]) == [
        {"statni", "statniho", "statnimu", "statnim"},
        {"dluh", "dluhu", "dluhem"},
    ]


def test_stem_match_needs_five_letters() -> None:
    assert stem_match("inflacni", "inflace") and stem_match("dluh", "dluh")
    assert not stem_match("cena", "cenzura") and not stem_match("valecny", "valka")


@pytest.mark.parametrize(
    ("a", "b"), [("kauza", "kauze"), ("dluhy", "dluhu"), ("urokovych", "uroky"), ("skoly", "skolu")]
)
def test_a_five_letter_word_ends_in_its_last_letter(a: str, b: str) -> None:
    assert stem_match(a, b) and stem_match(b, a)


def test_a_five_letter_word_still_needs_four_shared_letters() -> None:
    assert not stem_match("valky", "valcem") and not stem_match("penze", "penize")


def test_czech_and_reporting_verbs_are_boilerplate() -> None:
    question = "Důchodci říkají, že Česká republika šetří. Rozumíte jim?"
    assert content_words(question, "cs") == ["duchodci", "republika", "setri", "rozumite"]
    persona = "Lidi z České televize mi to říkají každej den.\nAndrej Babiš"
    assert not CHECK.check(persona, question, "důchody").relevant


@pytest.mark.parametrize(
    ("answer", "topic", "reason"),
    [
        ("Válku jsme nechtěli, to je kampaň.", "válka", "topic: válka"),  # declared 4th case
        ("Se státním dluhem jsem nikdy neměl problém.", "státní dluh", "topic: státní dluh"),
        ("Daněmi se to nevyřeší!", "daně", "topic: daně"),
        ("Inflační spirála, to je tragédie.", "inflace", "topic: inflace"),  # 5-letter stem, no forms
    ],
)
def test_the_topic_in_any_form(answer: str, topic: str, reason: str) -> None:
    assert CHECK.check(answer, "Otázka?", topic).reason == reason


def test_every_topic_word_must_be_there() -> None:
    # "státní rozpočet" is not "státní dluh": "dluh" is missing.
    assert not CHECK.check("Státní rozpočet je v pořádku.", "Otázka?", "státní dluh").relevant


def test_a_content_word_of_the_question_counts_but_not_boilerplate_or_the_name() -> None:
    question = "Pane Babiši, kolik let by lidé měli pracovat, než půjdou do penze?"
    on = CHECK.check("Penze budou vyšší, já jsem makal.\nAndrej Babiš", question, "důchody")
    assert on.relevant and on.reason == "question word: penze"
    off = CHECK.check("Pane, to je kampaň, měli byste se stydět.\nAndrej Babiš", question, "důchody")
    assert not off.relevant  # "pane", "měli", "Babiš" say nothing about pensions
    assert content_words(question, "cs") == [
        "babisi",
        "pracovat",
        "pujdou",
        "penze",
    ]  # the name: dropped later


def test_off_topic_answers() -> None:
    assert not CHECK.check("Válka! Válka!\nAndrej Babiš", "Co říkáte na inflaci?", "inflace").relevant
    assert not CHECK.check("", "Co říkáte na inflaci?", "inflace").relevant


def test_the_babis_pack_declares_its_topics_forms() -> None:
    forms = lexicon_for_pack(BUILTIN_PACKS_DIR / "babis").topic_forms
    assert "inflaci" in forms["inflace"] and "s inflací" in forms["inflace"]
