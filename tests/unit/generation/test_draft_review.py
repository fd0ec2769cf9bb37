"""Reviewing packs: sample answers with fitting questions, and the difference between two packs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from talklike.common.errors import InvalidArgument
from talklike.generation.drafting.review import diff, sample
from talklike.packs.loader import load_pack, load_pack_dir

PackWriter = Callable[..., Path]


def test_sample_draws_like_a_dataset_run() -> None:
    pack = load_pack("puffington")
    drawn = sample(pack, 10, seed=3)
    assert len(drawn) == 10
    assert {s.style for s in drawn} == set(pack.style_ids), "styles are mixed evenly"
    assert all(s.answer.endswith("\n" + pack.signature) and s.question.endswith("?") for s in drawn)
    assert sample(pack, 10, seed=3) == drawn and sample(pack, 10, seed=4) != drawn
    with pytest.raises(InvalidArgument, match="sample"):
        sample(pack, 0)


def test_sample_stops_when_the_pack_runs_dry(write_pack: PackWriter, base_files: dict[str, Any]) -> None:
    base_files["placeholders.yaml"]["placeholders"] = {"topic": ["taxes"], "enemy": ["they"], "verb": ["lie"]}
    base_files["templates/loud.yaml"]["templates"] = [
        {"id": "l-1", "style": "loud", "topic": "*", "text": "About {topic}: {enemy} {verb}!"}
    ]
    base_files["templates/calm.yaml"]["templates"] = [
        {"id": "c-1", "style": "calm", "topic": "*", "text": "Calm about {topic}."}
    ]
    base_files["questions.yaml"]["questions"] = [
        {"id": "q", "topic": "*", "styles": ["*"], "text": "And {topic}?"}
    ]
    tiny = load_pack_dir(write_pack(base_files))
    assert len(sample(tiny, 10)) == 2


def test_diff_compares_sizes_styles_and_vocabularies(
    write_pack: PackWriter, base_files: dict[str, Any]
) -> None:
    a = load_pack_dir(write_pack())
    base_files["persona.yaml"]["name"] = "other"
    base_files["placeholders.yaml"]["placeholders"]["enemy"] = ["the council", "the mayor"]
    base_files["placeholders.yaml"]["placeholders"]["extra"] = ["one", "two"]
    base_files["templates/calm.yaml"]["templates"].append(
        {"id": "c-3", "style": "calm", "topic": "*", "text": "Whisper {topic} to {extra}."}
    )
    b = load_pack_dir(write_pack(base_files, name="other"))
    result = diff(a, b).as_dict()
    assert result["sizes"]["templates"] == {"a": 5, "b": 6, "delta": 1}
    assert result["sizes"]["placeholders"] == {"a": 3, "b": 4, "delta": 1}
    assert result["styles"] == {
        "only_a": [],
        "only_b": [],
        "both": {"loud": {"a": 3, "b": 3}, "calm": {"a": 2, "b": 3}},
    }
    enemy = result["placeholders"]["enemy"]
    assert (enemy["in"], enemy["a"], enemy["b"], enemy["shared"]) == ("both", 3, 2, 1)
    assert enemy["examples_only_a"] == ["the press", "the rivals"] and enemy["examples_only_b"] == [
        "the mayor"
    ]
    assert result["placeholders"]["extra"]["in"] == "b"
    assert result["topics"]["jaccard"] == 1.0
    words = result["template_words"]
    assert words["only_b"] == 2 and words["shared"] == words["a"], "whisper and to are new"
    assert diff(a, a).template_words.jaccard == 1.0
