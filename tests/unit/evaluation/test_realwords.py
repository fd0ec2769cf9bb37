"""Real-language word share on real answers: broken Czech scores low, colloquial Czech does not."""

from __future__ import annotations

import pytest
from talklike.common.errors import InvalidArgument
from talklike.evaluation.realwords import NOT_LANGUAGE_BELOW, RealWords

CZECH = RealWords("cs", ["sabotujou", "přebytkovej rozpočet", "Andrej Babiš"])

#: Persona answers as a reader expects them: spoken Czech, Slovak slips, the pack's own words.
FLUENT = [
    "Inflace? To je kampaň. Voni kecaj, já jsem celej život makal a umím počítat.\nAndrej Babiš",
    "Já to nechápu. Brusel nám nařizuje migranty, ale já jsem zastavil kvóty, to je jasný jak facka. "
    "Sabotujou to Piráti.\nAndrej Babiš",
    "Hele, ja som robil celý život, keď to nechápu, tak to nechápu. To je neuvěřitelný!\nAndrej Babiš",
    "Měli jsme přebytkovej rozpočet. Přebytkovej! A teď? Dluhy, dluhy a zase dluhy.\nAndrej Babiš",
]


@pytest.mark.parametrize("answer", FLUENT)
def test_fluent_persona_answers_are_the_language(answer: str) -> None:
    share = CZECH.share(answer)
    assert share.share >= 0.95 and not share.not_language, share


def test_gibberish_scores_low_and_names_the_words() -> None:
    # 17 words, 4 of them invented ("dalžky", "dalžka" ×3): 13/17 = 0.7647
    share = CZECH.share("To je jako řekl dalžky. A to je dalžka. A to je dalžka. A to je dalžka.")
    assert share.share == pytest.approx(13 / 17, abs=1e-4)
    assert share.unknown == ("dalžky", "dalžka")
    assert share.not_language and share.share < NOT_LANGUAGE_BELOW


def test_english_is_not_czech_though_czech_web_text_contains_it() -> None:
    # Only "i" and "a" are as common in Czech as in English: 2/17.
    share = CZECH.share("I think that the inflation is a problem for all of us and we must act now.")
    assert share.share == pytest.approx(2 / 17, abs=1e-4) and share.not_language


@pytest.mark.parametrize(
    ("word", "real"),
    [
        ("voni", True),
        ("makal", True),
        ("celej", True),
        ("kecaj", True),
        ("nechápu", True),
        ("neuvěřitelný", True),
        ("keď", True),  # a Slovak slip: Czech text has it
        ("inflací", True),  # a rare inflected form
        ("sabotujou", True),  # not in the word list, but pack vocabulary
        ("dalžka", False),
        ("dalžky", False),
        ("the", False),
    ],
)
def test_single_words(word: str, real: bool) -> None:
    assert CZECH.is_real(word) is real


def test_signature_words_count_and_an_empty_answer_is_not_the_language() -> None:
    assert CZECH.share("Andrej Babiš").share == 1.0
    empty = CZECH.share("… 123 !")
    assert (empty.words, empty.share, empty.not_language) == (0, 0.0, True)


def test_english_pack_has_no_contrast_and_an_unknown_language_is_refused() -> None:
    assert RealWords("en").share("I think that the inflation is a problem.").share == 1.0
    with pytest.raises(InvalidArgument, match="language"):
        RealWords("xx")
