"""The metric table: values, intervals and paired tests of hand-made answers, per source."""

from __future__ import annotations

import pytest
from talklike.evaluation.metrics import BY_KEY, Side, metric_block
from talklike.evaluation.results import EvalRow, source_blocks
from talklike.evaluation.scoring import AnswerScorer, PersonaLexicon, opening, top_opening

LEXICON = PersonaLexicon.build("Andrej Babiš", "cs", ["kampaň", "makal jsem"], {"inflace": ("inflaci",)})
SCORER = AnswerScorer(LEXICON)
QUESTION = "Co říkáte na inflaci?"
GOOD = "Inflaci způsobili voni, to je kampaň, já jsem makal.\nAndrej Babiš"
LOOP = "Válka! Válka! Válka! Válka! Válka! Válka!\nAndrej Babiš"
ENGLISH = "I think that inflation is a problem for all of us."


def side(answers: list[str], scored: list[tuple[float, int]] | None = None) -> Side:
    return Side(answers, [SCORER.score(a, QUESTION, "inflace") for a in answers], scored or [])


def test_opening_and_mode_collapse() -> None:
    assert opening("Já jsem to, řekl!") == "já jsem to"
    assert top_opening(["a b c", "x y z", "a b c", ""]) == ("a b c", 2)
    assert top_opening(["x", "y"]) == ("x", 1)  # a tie: the first seen
    assert top_opening(["", ""]) == ("", 0)


def test_rates_counts_intervals_and_mcnemar() -> None:
    # 10 questions; before: 8 English answers and 2 good ones; after: 9 good, 1 loop.
    before = side([ENGLISH] * 8 + [GOOD] * 2)
    after = side([GOOD] * 9 + [LOOP])
    block = metric_block(before, after)
    assert block["questions"] == 10
    sig = block["signature_rate"]
    assert (sig["before"]["count"], sig["after"]["count"], sig["before"]["n"]) == (2, 10, 10)
    assert sig["after"]["ci"] == [0.7225, 1.0]  # Wilson 10/10: 10/(10 + z²) = 0.72246
    # Discordant: 8 questions gained the signature, none lost it: 2·(1/2⁸).
    assert sig["test"] == "exact McNemar" and sig["p_value"] == pytest.approx(2 / 256, rel=1e-3)
    assert block["not_language_rate"]["before"]["value"] == 0.8
    assert block["loop_rate"]["after"]["count"] == 1
    # 1 loop after, none before: McNemar(0, 1) = 1.
    assert block["loop_rate"]["p_value"] == 1.0
    assert block["relevance_rate"]["after"]["count"] == 9  # the loop is off topic
    opening_entry = block["top_opening_share"]
    assert opening_entry["after"]["opening"] == "inflaci způsobili voni"
    assert opening_entry["after"]["count"] == 9 and opening_entry["before"]["count"] == 8


def test_means_use_the_bootstrap_and_the_sign_test() -> None:
    before = side([ENGLISH] * 8 + [GOOD] * 2)
    after = side([GOOD] * 10)
    share = metric_block(before, after)["mean_real_word_share"]
    assert share["after"]["value"] == 1.0 and share["after"]["ci"] == [1.0, 1.0]
    assert share["before"]["ci"][0] < share["before"]["value"] < share["before"]["ci"][1]
    # 8 questions better, 2 tied: sign test 2·(1/2⁸).
    assert share["test"] == "sign test" and share["p_value"] == pytest.approx(2 / 256, rel=1e-3)


def test_perplexity_per_question() -> None:
    before = side([GOOD] * 4, [(-8.0, 4)] * 4)  # e² per question
    after = side([GOOD] * 4, [(-4.0, 4)] * 4)  # e¹
    entry = metric_block(before, after)["perplexity"]
    assert entry["before"]["value"] == pytest.approx(7.3891, abs=1e-4)
    assert entry["after"]["ci"] == [pytest.approx(2.7183, abs=1e-4)] * 2
    assert entry["p_value"] == pytest.approx(2 / 16)  # 4 of 4 better: 2·(1/2⁴)
    assert metric_block(side([GOOD]), side([GOOD]))["perplexity"]["after"] == {
        "value": None,
        "n": 0,
        "ci": None,
    }


def test_blocks_per_source_and_overall() -> None:
    scores = SCORER.score(GOOD, QUESTION, "inflace")
    rows = [
        EvalRow(i, QUESTION, "", "inflace", "", GOOD, GOOD, scores, scores, source=source)
        for i, source in enumerate(["freeform", "template", "template"], start=1)
    ]
    blocks = source_blocks(rows)
    assert list(blocks) == ["overall", "template", "freeform"]
    assert [blocks[b]["questions"] for b in blocks] == [3, 2, 1]
    assert set(BY_KEY) <= set(blocks["overall"])
