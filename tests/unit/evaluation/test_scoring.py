"""Scores an evaluator can check by hand: markers, signature, language, length, diversity."""

from __future__ import annotations

import math

import pytest
from talklike.evaluation.language import language_share
from talklike.evaluation.scoring import (
    AnswerScorer,
    PersonaLexicon,
    distinct_n,
    ends_with_signature,
    perplexity,
    summarize,
)

LEXICON = PersonaLexicon.build(
    signature="Andrej Babiš",
    language="cs",
    phrases=["Brusel", "kampaň", "to je neuvěřitelný", "makal jsem", "no", "Andrej Babiš"],
)


def test_lexicon_folds_dedupes_and_drops_short_and_signature() -> None:
    assert LEXICON.markers == ("brusel", "kampan", "makal jsem", "to je neuveritelny")


def test_markers_match_without_diacritics_and_on_word_boundaries() -> None:
    scorer = AnswerScorer(LEXICON)
    scores = scorer.score("To je NEUVĚŘITELNÝ! Brusel zase. Bruselský úředník ne. Kampaň! Andrej Babiš")
    assert scores.markers_found == ("brusel", "kampan", "to je neuveritelny")
    assert scores.marker_count == 3
    assert scores.has_signature


def test_markers_the_question_already_names_do_not_count() -> None:
    scorer = AnswerScorer(LEXICON)
    echo = scorer.score("Brusel, Brusel, Brusel.", question="Co říkáte na Brusel?")
    assert echo.markers_found == () and echo.marker_count == 0
    own = scorer.score("Brusel? To je kampaň!", question="Co říkáte na Brusel?")
    assert own.markers_found == ("kampan",)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Makal jsem.\nAndrej Babiš", True),
        ("Makal jsem. andrej babis!", True),
        ("Andrej Babiš makal celej život.", False),
        ("Babiš", False),
        ("", False),
    ],
)
def test_signature_must_end_the_answer(answer: str, expected: bool) -> None:
    assert ends_with_signature(answer, "Andrej Babiš") is expected


def test_language_share_tells_czech_from_english() -> None:
    czech = language_share("Já jsem celej život makal a voni jenom kradou, to je šílený.", "cs")
    english = language_share("I think that the inflation is a problem for all of us.", "cs")
    assert czech.is_target and czech.share > 0.9
    assert not english.is_target and english.share < 0.2
    assert not language_share("xyzzy 12345", "cs").is_target


def test_distinct_n_counts_unique_ngrams_over_all_texts() -> None:
    assert distinct_n(["a b a b", "a b"], 1) == pytest.approx(2 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n([], 2) == 0.0


def test_perplexity_from_total_logprob() -> None:
    assert perplexity(-4 * math.log(2), 4) == pytest.approx(2.0)
    assert math.isinf(perplexity(0.0, 0))


def test_summary_rates_are_shares_of_answers() -> None:
    scorer = AnswerScorer(LEXICON)
    answers = ["Brusel krade!\nAndrej Babiš", "I do not know.", "Kampaň, makal jsem. Andrej Babiš"]
    summary = summarize(answers, [scorer.score(a) for a in answers])
    assert summary.answers == 3
    assert summary.signature_rate == pytest.approx(2 / 3)
    assert summary.marker_rate == pytest.approx(2 / 3)
    assert summary.markers_per_answer == pytest.approx(1.0)
    assert summary.language_rate == pytest.approx(2 / 3)


def test_scores_and_summary_carry_loops_language_relevance_and_openings() -> None:
    scorer = AnswerScorer(PersonaLexicon.build("Andrej Babiš", "cs", ["kampaň"], {"válka": ("válku",)}))
    answers = [
        "Válka! Válka! Válka! Válka! Válka! Válka!\nAndrej Babiš",
        "To je jako řekl dalžky. A to je dalžka. A to je dalžka. A to je dalžka.",
        "Válku nechci, to je kampaň, já jsem celej život makal.\nAndrej Babiš",
        "To je jako když se ptáte na válku, to je kampaň.\nAndrej Babiš",
    ]
    scores = [scorer.score(a, "Jak by měla skončit válka?", "válka") for a in answers]
    assert [s.loop for s in scores] == [True, True, False, False]
    assert [s.not_language for s in scores] == [False, True, False, False]
    assert [s.relevant for s in scores] == [True, False, True, True]
    assert scores[1].unknown_words == ("dalžky", "dalžka")
    summary = summarize(answers, scores)
    assert (summary.loop_rate, summary.not_language_rate, summary.relevance_rate) == (0.5, 0.25, 0.75)
    assert (summary.top_opening, summary.top_opening_share) == ("to je jako", 0.5)
    assert summary.mean_real_word_share == pytest.approx((1 + 13 / 17 + 1 + 1) / 4, abs=1e-4)
