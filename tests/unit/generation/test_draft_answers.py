"""Parsing and checking the LLM's step answers: JSON extraction, lenient shapes, item checks."""

from __future__ import annotations

import pytest
from talklike.generation.drafting.answers import (
    CheckedText,
    Malformed,
    PersonaAnswer,
    PlaceholdersAnswer,
    Rejection,
    StylesAnswer,
    TemplatesAnswer,
    TextRules,
    check_text,
    clean_values,
    extract_json,
    parse_as,
    parse_list,
    placeholder_name,
    repair_placeholders,
    salvage_truncated,
    slug,
)

RULES = TextRules(
    step="templates/loud",
    placeholders={"topic": ("taxes", "the new road", "road"), "rival": ("the council",)},
    topic_name="topic",
    signature="Mini Sig",
    require_placeholder=True,
    require_topic=True,
    min_chars=10,
    max_chars=120,
    example_texts=frozenset({"everyone asks me about {topic}. i say: ask {rival}!"}),
)


@pytest.mark.parametrize(
    "content",
    [
        '{"templates": ["a"]}',
        'Sure! Here it is:\n```json\n{"templates": ["a"]}\n```\nHope it helps {really}.',
        '["a"]',
    ],
)
def test_the_first_complete_json_value_is_found_in_prose_and_fences(content: str) -> None:
    assert TemplatesAnswer.model_validate(extract_json(content)).templates == ["a"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("Sure, I can help with that.", "not JSON (it has no { or [)"),
        ('{"templates": ["unterminated', "not valid JSON (Unterminated string"),
        ("", "not JSON"),
        # A broken list is reported as broken, not salvaged as one of its inner objects.
        ('{"styles": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}}]', "Expecting ',' delimiter"),
    ],
)
def test_no_json_is_malformed_with_a_reason(content: str, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        extract_json(content)
    assert reason in info.value.reason


def test_a_value_after_broken_prose_braces_is_found() -> None:
    assert extract_json('I {think} this: {"values": ["a \\" }", "b"]}') == {"values": ['a " }', "b"]}


def test_a_reply_cut_off_mid_list_keeps_its_complete_items() -> None:
    cut = '{"templates": ["one {topic}", "two {topic}", "three and three and thr'
    answer, rejected = parse_list(cut, TemplatesAnswer, "templates/x")
    assert answer.templates == ["one {topic}", "two {topic}"]
    assert [(r.category, r.item) for r in rejected] == [("cut off", '"three and three and thr')]
    assert salvage_truncated('["a", "b", "c') == (["a", "b"], '"c')
    assert salvage_truncated('{"values": {"x": {"y": "z", "w') is not None, "closes nested objects"
    assert salvage_truncated("no json at all") is None
    with pytest.raises(Malformed, match="not valid JSON"):
        parse_list('{"templates": ["only one, cut', TemplatesAnswer, "templates/x")
    complete, none = parse_list('{"templates": ["a"]}', TemplatesAnswer, "t")
    assert complete.templates == ["a"] and none == []


def test_list_answers_accept_a_bare_list_or_another_key() -> None:
    assert parse_as('["x", "y"]', TemplatesAnswer).templates == ["x", "y"]
    assert parse_as('{"answers": ["x"], "note": "hi"}', TemplatesAnswer).templates == ["x"]
    with pytest.raises(Malformed, match="templates: Field required"):
        parse_as('{"a": ["x"], "b": ["y"]}', TemplatesAnswer)


def test_persona_shape_errors_name_the_field() -> None:
    with pytest.raises(Malformed) as info:
        parse_as('{"display_name": "X", "description": "short"}', PersonaAnswer)
    assert "display_name: String should have at least 2 characters" in info.value.reason
    assert "description: String should have at least 10 characters" in info.value.reason
    ok = parse_as(
        '{"display_name": "Ann Example", "language": "EN_gb", "description": "A made-up persona for tests."}',
        PersonaAnswer,
    )
    assert (ok.language, ok.signature) == ("en-gb", "")


def test_styles_and_placeholders_accept_strings_for_items() -> None:
    styles = parse_as(
        '{"styles": ["Angry: shouts at everyone", {"name": "Calm", "description": "Sighs."}]}', StylesAnswer
    )
    assert [(s.id, s.name, s.description) for s in styles.styles] == [
        ("", "Angry", "shouts at everyone"),
        ("", "Calm", "Sighs."),
    ]
    names = parse_as('["rival: who is blamed", {"name": "Boast"}]', PlaceholdersAnswer)
    assert [(p.name, p.meaning) for p in names.placeholders] == [("rival", "who is blamed"), ("Boast", "")]


def test_ids_and_placeholder_names_are_made_safe() -> None:
    assert slug("Folksy Wisdom!") == "folksy-wisdom"
    assert slug("Škoda Žluťoučký") == "skoda-zlutoucky"
    assert slug("2nd style") == "s-2nd-style"
    assert slug("!!!") == ""
    assert placeholder_name("{Rival Party}") == "rival_party"
    assert placeholder_name("***") == ""


def test_values_are_cleaned_and_each_rejection_has_a_reason() -> None:
    kept, rejected = clean_values(
        "topics", ["taxes", " Taxes ", "", 42, "a" * 70, "the {x}", ["nested"], "roads."], max_chars=60
    )
    assert kept == ["taxes", "42", "roads"]
    assert [r.category for r in rejected] == [
        "duplicate value",
        "not text",
        "too long",
        "stray brace",
        "not text",
    ]
    _kept, again = clean_values("topics", ["roads"], max_chars=60, taken=["ROADS"])
    assert again[0].category == "duplicate value"


def test_placeholder_misspellings_are_repaired_only_for_known_names() -> None:
    known = ["topic", "rival"]
    assert repair_placeholders("{{topic}} and { Rival } and [topic] and <rival>", known) == (
        "{topic} and {rival} and {topic} and {rival}"
    )
    assert repair_placeholders("{{mayor}} and [note]", known) == "{{mayor}} and [note]"


@pytest.mark.parametrize(
    ("item", "category"),
    [
        ("", "not text"),
        ({"oops": 1}, "not text"),
        ("Too short", "too short"),
        ("x" * 121 + " {topic}", "too long"),
        ("Everyone asks me about {topic}. I say: ask {rival}!", "copied from the example"),
        ("Ask {mayor} about {topic}, please.", "unknown placeholder"),
        ("About {topic} {oh} } no", "unknown placeholder"),
        ("About {topic} there is a } here", "stray brace"),
        ("About {topic}, yours, Mini Sig", "contains the signature"),
        ("Nothing to fill in this answer.", "no placeholder"),
        ("It is the fault of {rival}, always.", "no topic"),
    ],
)
def test_bad_templates_are_rejected_with_a_category(item: object, category: str) -> None:
    checked = check_text(item, RULES)
    assert isinstance(checked, Rejection) and checked.category == category, checked


def test_good_templates_get_a_topic() -> None:
    assert check_text("What about {topic}? Ask {rival}.", RULES) == CheckedText(
        "What about {topic}? Ask {rival}.", "*"
    )
    fixed = check_text("The new road was ruined by {rival}.", RULES)
    assert fixed == CheckedText("The new road was ruined by {rival}.", "the new road"), (
        "the longest named topic"
    )
    assert check_text({"text": "{{topic}}  is   fine by {rival}."}, RULES) == CheckedText(
        "{topic} is fine by {rival}.", "*"
    )


def test_questions_need_no_placeholder() -> None:
    rules = TextRules(
        step="questions",
        placeholders=RULES.placeholders,
        topic_name="topic",
        signature="Mini Sig",
        require_placeholder=False,
        require_topic=False,
        min_chars=8,
        max_chars=300,
    )
    assert check_text("Are you tired today?", rules) == CheckedText("Are you tired today?", "*")
    assert check_text("What about taxes?", rules) == CheckedText("What about taxes?", "taxes")
