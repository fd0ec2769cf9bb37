"""The babis pack's lexicon: which of its words are persona markers and which are topics."""

from __future__ import annotations

from pathlib import Path

from talklike.evaluation.lexicon import lexicon_for_pack, pack_dir
from talklike.evaluation.scoring import AnswerScorer


def test_topics_are_not_persona_markers_but_stay_real_words(tmp_path: Path) -> None:
    lexicon = lexicon_for_pack(pack_dir("babis", tmp_path))
    scorer = AnswerScorer(lexicon)
    # "EET" is a topic value (and no Czech dictionary word); "Brusel" in "v Bruselu" is a place.
    assert scorer.markers_in("EET a důchody") == set()
    assert scorer.markers_in("Já jsem byl v Bruselu") == {"v bruselu"}
    scores = scorer.score("EET? To je kampaň.", "Vrátíte účtenky?", "EET")
    assert scores.markers_found == ("kampan",)
    assert scores.real_word_share == 1.0 and scores.relevant
    assert "EET" in lexicon.topic_forms and "kůrovec" in lexicon.topic_forms
