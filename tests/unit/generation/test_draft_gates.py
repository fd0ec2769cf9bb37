"""The draft's arithmetic, its duplicate index, its slip rules, the gates, prompts and the request checks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from talklike.common.errors import AlreadyExists, InvalidArgument
from talklike.generation.drafting import prompts
from talklike.generation.drafting.gates import (
    TextIndex,
    batch_budget,
    default_style_count,
    pack_problems,
    question_count,
    quotas,
    slip_rules,
)
from talklike.generation.drafting.spec import build_spec, check_target, split_examples
from talklike.generation.llm import LlmConfig
from talklike.packs.loader import load_pack_dir

PackWriter = Callable[..., Path]


def test_quotas_split_evenly_and_add_up() -> None:
    assert quotas(40, ["a", "b", "c"]) == {"a": 14, "b": 13, "c": 13}
    for total in (10, 399, 5000):
        for n in range(2, 9):
            split = quotas(total, [str(i) for i in range(n)])
            assert sum(split.values()) == total and max(split.values()) - min(split.values()) <= 1


def test_plan_sizes_grow_with_the_request() -> None:
    assert [default_style_count(n) for n in (10, 29, 30, 99, 100, 299, 300, 5000)] == [2, 2, 3, 3, 4, 4, 5, 5]
    assert question_count(10) == 6 and question_count(400) == 50 and question_count(5000) == 60
    assert batch_budget(14, 6) == 8 and batch_budget(1, 10) == 4


def test_the_index_refuses_exact_folded_reordered_and_one_word_changes() -> None:
    index = TextIndex()
    index.add("Mark my words, {topic} was ruined by {rival} and nobody else.", "template 1")
    assert index.reason("Mark my words, {topic} was ruined by {rival} and nobody else.").startswith(
        "exact duplicate of template 1"
    )
    assert "case, diacritics" in index.reason("MARK my words: {topic} was ruined by {rival} and nobody else!")
    assert "another order" in index.reason("{topic} was ruined by {rival} and nobody else, mark my words.")
    assert "words shared" in index.reason("Mark my words, {topic} was ruined by {rival} and nobody ever.")
    assert index.reason("Honestly, {topic} is a triumph that {rival} never understood.") == ""
    assert len(index) == 1


def test_slip_rules_compile_and_can_slip_any_answer() -> None:
    rules = slip_rules(["erm", "you know", "back\\slash"])
    assert [r["id"] for r in rules][:2] == ["filler-1", "filler-1-mid"]
    body = "Taxes are fine, says the council."
    for rule in rules:
        changed = re.sub(rule["find"], rule["replace"], body, count=1)
        assert changed != body, rule["id"]
    assert any(r["find"] == "^" for r in rules) and slip_rules([])[0]["id"] == "stutter"
    assert re.sub(rules[4]["find"], rules[4]["replace"], "x") == "Back\\slash, x"


def test_pack_problems_catch_what_the_loader_allows(
    write_pack: PackWriter, base_files: dict[str, Any]
) -> None:
    small = load_pack_dir(write_pack())
    assert pack_problems(small, 40) == ["only 5 usable templates of 40 asked for; a pack needs at least 10"]
    loud = base_files["templates/loud.yaml"]["templates"]
    loud.append(
        {"id": "l-4", "style": "loud", "topic": "roads", "text": "The roads! Nobody fixes the roads."}
    )
    loud.append({"id": "l-5", "style": "loud", "topic": "*", "text": "About {topic}: {enemy} {verb} again!"})
    loud.extend(
        {"id": f"x-{n}", "style": "loud", "topic": "*", "text": f"{{topic}} number {n} {'word ' * n}"}
        for n in range(1, 8)
    )
    problems = pack_problems(load_pack_dir(write_pack(base_files, name="mini")), 12)
    assert problems == [
        "template l-4 uses no placeholder",
        "template l-5 is a near duplicate of l-1 (4 of 5 words shared)",
    ]


def test_a_clean_pack_passes(write_pack: PackWriter, base_files: dict[str, Any]) -> None:
    texts = [
        "About {topic}: {enemy} {verb}!",
        "Well, {topic} is fine, whatever {enemy} say.",
        "{topic} is a scandal and {enemy} know it.",
        "I think {enemy} {verb} about {topic}.",
        "Nobody asked me about {topic} before {enemy} did.",
        "Let me be clear on {topic}: I never {verb}.",
        "Tomorrow {topic} will shine, unlike {enemy}.",
        "Ask anyone in town about {topic} and they laugh.",
        "My grandmother fixed {topic} with one spoon.",
        "Every single week, {topic} costs us less than {enemy} claim.",
    ]
    base_files["templates/loud.yaml"]["templates"] = [
        {"id": f"l-{n}", "style": "loud" if n % 2 else "calm", "topic": "*", "text": t}
        for n, t in enumerate(texts)
    ]
    del base_files["templates/calm.yaml"]
    assert pack_problems(load_pack_dir(write_pack(base_files)), 10) == []


def llm() -> LlmConfig:
    return LlmConfig(base_url="http://127.0.0.1:1/v1", model="m")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "../up"}, "name"),
        ({"description": "\n "}, "description"),
        ({"template_count": 9}, "template_count"),
        ({"template_count": 5001}, "template_count"),
        ({"language": "english"}, "language"),
        ({"style_count": 9}, "style_count"),
        ({"malformed_retries": -1}, "malformed_retries"),
    ],
)
def test_build_spec_names_the_bad_field(fields: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"name": "new", "description": "someone", "template_count": 10, "llm": llm}
    with pytest.raises(InvalidArgument) as info:
        build_spec(**{**args, **fields})
    assert info.value.field == field


def test_build_spec_fills_defaults() -> None:
    spec = build_spec(
        name="new", description=" someone ", template_count=400, llm=llm, examples="a\n\nb", language="EN"
    )
    assert (spec.description, spec.style_count, spec.malformed_retries, spec.language) == (
        "someone",
        5,
        2,
        "en",
    )
    assert spec.examples == ("a", "b")


def test_examples_are_split_and_kept_short() -> None:
    assert split_examples("one\ntwo\n\nthree") == ("one two", "three")
    assert split_examples("a\nb\nc\nd\ne\nf") == ("a", "b", "c", "d")
    long = split_examples("word " * 200)[0]
    assert len(long) <= 304 and long.endswith(" ...")


def test_taken_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AlreadyExists, match="built-in"):
        check_target(tmp_path, "puffington", replace=True)
    (tmp_path / "packs" / "mine").mkdir(parents=True)
    with pytest.raises(AlreadyExists, match="already exists"):
        check_target(tmp_path, "mine", replace=False)
    check_target(tmp_path, "mine", replace=True)
    check_target(tmp_path, "other", replace=False)


def test_prompts_are_small_and_carry_an_example() -> None:
    card = {"display_name": "Ann", "description": "A test persona.", "language": "cs"}
    vocab = {"topic": ["daně", "silnice"], "rival": ["opozice"]}
    built = [
        prompts.persona("someone", "", ()),
        prompts.voice(card, ("Ahoj!",)),
        prompts.styles(card, 3, ()),
        prompts.topics(card, 8),
        prompts.placeholders(card, 3),
        prompts.vocabulary(card, "rival", "who is blamed", 6),
        prompts.templates(card, {"name": "Loud", "description": "Shouts."}, vocab, {}, "topic", 5, ["x"], ()),
        prompts.questions(card, vocab, {}, "topic", 5, []),
        prompts.persona("someone", "en", ()),
    ]
    for messages in built:
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
        example = json.loads(messages[2]["content"])
        assert isinstance(example, dict) and 1 <= len(example) <= 4, "one small object"
        assert "JSON object only" in messages[3]["content"] and len(messages[3]["content"]) < 1500
        assert "sea captain" in messages[1]["content"] and "sea captain" not in messages[3]["content"]
    assert "Czech (cs)" in built[3][3]["content"]
    assert json.loads(built[6][2]["content"]) == {
        "templates": [
            "Everyone asks me about {topic}. I say: ask {rival}!",
            "{topic}? In my day we did not need {rival} to sort that out.",
        ]
    }
    assert "Already written" in built[6][3]["content"] and "{rival} (e.g. opozice)" in built[6][3]["content"]
    assert "language" in built[0][3]["content"] and "language" not in json.loads(built[8][2]["content"])
    assert prompts.persona("x", "", ()) == prompts.persona("x", "", ()), "pure: the cache key depends on it"
