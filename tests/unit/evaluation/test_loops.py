"""Loops vs rhetoric, on answers a model really wrote and on realistic persona answers."""

from __future__ import annotations

import pytest
from talklike.evaluation.loops import loop_verdict

SIGNATURE = "Andrej Babiš"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        # Answers of a fine-tuned model that a first benchmark called a success.
        ("Válka! Válka! Válka! Válka! Válka! Válka!\nAndrej Babiš", "“válka válka válka válka” ×3"),
        (
            "To je jako řekl dalžky. A to je dalžka. A to je dalžka. A to je dalžka.",
            "“a to je dalžka” ×3",
        ),
        # 10 words, "kampaň" 4 of them (40 %), no four-word sequence three times.
        (
            "Kampaň, kampaň, to je kampaň, jenom kampaň a nic jinýho.\nAndrej Babiš",
            "“kampaň” is 40% of the words",
        ),
    ],
)
def test_loops_are_caught_with_their_evidence(answer: str, reason: str) -> None:
    verdict = loop_verdict(answer, SIGNATURE)
    assert verdict.is_loop and verdict.reason == reason


@pytest.mark.parametrize(
    "answer",
    [
        # A catchphrase twice and a parallel "jako když" twice: rhetoric.
        "Já jsem celej život makal. Já jsem manažer, ne politik. Je to jako když firma krachuje "
        "a je to jako když vám někdo krade.\nAndrej Babiš",
        # A tricolon: the frame three times, a new word each time.
        "Já jsem expert. Na zdravotnictví jsem expert, na ekonomiku jsem expert, na zemědělství "
        "jsem expert. Celej život se učím.\nAndrej Babiš",
        "Jasně, jasně. Za všechno může Babiš. Za exekuce může Babiš, za kůrovce může Babiš, za to, "
        "že prší, může Babiš. Ještě něco?\nAndrej Babiš",
        # Short emphasis: under 8 words the share rule does not apply.
        "Ne, ne a ne! Nikdy.\nAndrej Babiš",
        "",
    ],
)
def test_rhetoric_is_not_a_loop(answer: str) -> None:
    assert not loop_verdict(answer, SIGNATURE).is_loop


def test_the_signature_is_left_out_of_the_count() -> None:
    # 6 words + the signature: counted, "ne" would be 3/8 = 37.5 % of 8 words, a "loop";
    # left out, the answer has 6 words, too short for the share rule.
    assert not loop_verdict("Ne, ne a ne! Nikdy to!\nAndrej Babiš", SIGNATURE).is_loop
    assert loop_verdict("Ne, ne a ne! Nikdy to!\nAndrej Babiš", "").is_loop
    assert not loop_verdict("Andrej Babiš", SIGNATURE).is_loop
