"""Copied from the prompt, by hand: runs of four or more words that stand in the prompt."""

from __future__ import annotations

from talklike.evaluation.echo import copying
from talklike.evaluation.lexicon import lexicon_for_pack, pack_dir
from talklike.evaluation.scoring import AnswerScorer

SYSTEM = "Jsi satirická parodie politika: hovorová čeština, sebechvála, všude kampaň a podpis na konci."
QUESTION = "Jak chcete zastavit zdražování potravin?"


def test_an_echoed_prompt_is_copied_and_own_words_are_kept() -> None:
    echo = copying(f"{SYSTEM}\n\n{QUESTION} mendatang", f"{SYSTEM}\n{QUESTION}")
    assert echo.own_text == "mendatang"
    assert echo.copied_share == round(18 / 19, 4) and echo.copies_prompt


def test_three_shared_words_are_not_a_copy_and_case_and_accents_do_not_hide_one() -> None:
    own = copying("Zdražování potravin? To je kampaň!", QUESTION)
    assert own.copied_share == 0.0 and not own.copies_prompt
    assert own.own_text == "Zdražování potravin To je kampaň"
    folded = copying("jak CHCETE zastavit zdrazovani, ptáte se. Já vím jak.", QUESTION)
    assert folded.own_text == "ptáte se Já vím jak" and folded.copied_share == round(4 / 9, 4)


def test_markers_and_topic_in_the_echo_do_not_count(tmp_path: object) -> None:
    from pathlib import Path

    scorer = AnswerScorer(lexicon_for_pack(pack_dir("babis", Path(str(tmp_path)))))
    prompt = f"{SYSTEM}\n{QUESTION}"
    echoed = scorer.score(f"{SYSTEM} {QUESTION}", QUESTION, "ceny potravin", prompt)
    assert echoed.copies_prompt and echoed.marker_count == 0 and not echoed.relevant
    own = scorer.score(
        "Kampaň! Potraviny zdražujou, protože voni kradou.\nAndrej Babiš", QUESTION, "ceny potravin", prompt
    )
    assert not own.copies_prompt and own.marker_count > 0 and own.relevant


def test_the_real_word_share_counts_the_answers_own_words(tmp_path: object) -> None:
    """An echo of fluent Czech followed by junk tokens: the junk is what the model wrote."""
    from pathlib import Path

    scorer = AnswerScorer(lexicon_for_pack(pack_dir("babis", Path(str(tmp_path)))))
    prompt = f"{SYSTEM}\n{QUESTION}"
    junk = scorer.score(f"{SYSTEM} {QUESTION} społec jährigenmodel", QUESTION, "ceny potravin", prompt)
    assert junk.real_word_share == 0.0 and junk.not_language  # the two own words are not Czech
    assert junk.unknown_words == ("społec", "jährigenmodel")
    mixed = scorer.score(f"{QUESTION} To je kampaň, zdražování qwzx.", QUESTION, "ceny potravin", prompt)
    # the question's five words are a copy; own: "To je kampaň zdražování qwzx", 4 of 5 real
    assert mixed.real_word_share == 0.8 and mixed.unknown_words == ("qwzx",)
    pure = scorer.score(f"{SYSTEM} {QUESTION}", QUESTION, "ceny potravin", prompt)
    assert pure.copies_prompt and pure.real_word_share == 1.0  # nothing of its own: the copy's share
