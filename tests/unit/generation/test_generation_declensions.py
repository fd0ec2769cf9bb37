"""Declined placeholders and free-form questions: forms follow the answer's topic, and the loader
names every gap (file, item, problem)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from talklike.generation.engine import AnswerGenerator
from talklike.generation.questions import QuestionPicker
from talklike.packs.loader import PackInvalid, load_pack_dir

PackWriter = Callable[..., Path]

#: Made-up case forms, distinct per value, so a form betrays which value it came from.
FORMS = {
    "taxes": {"of": "of-taxes", "to": "to-taxes"},
    "roads": {"of": "of-roads", "to": "to-roads"},
    "schools": {"of": "of-schools", "to": "to-schools"},
    "parks": {"of": "of-parks", "to": "to-parks"},
}


def declined(files: dict[str, Any]) -> dict[str, Any]:
    """The base pack with its topic declined and templates/questions that use the forms."""
    files["placeholders.yaml"]["declensions"] = {"topic": {k: dict(v) for k, v in FORMS.items()}}
    loud = files["templates/loud.yaml"]["templates"]
    loud.append({"id": "l-4", "style": "loud", "topic": "*", "text": "{Topic_of} again! {enemy} {verb}."})
    loud.append({"id": "l-5", "style": "loud", "topic": "parks", "text": "Parks: {topic_to} and {enemy}!"})
    files["questions.yaml"]["questions"].append(
        {"id": "q-6", "topic": "*", "styles": ["*"], "text": "What now {topic_to}?"}
    )
    return files


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PackInvalid) as info:
        load_pack_dir(path)
    return [str(p) for p in info.value.problems]


def test_forms_name_the_answers_own_topic(write_pack: PackWriter, base_files: dict[str, Any]) -> None:
    pack = load_pack_dir(write_pack(declined(base_files)))
    assert pack.declensions["topic"]["roads"]["of"] == "of-roads"
    assert {"topic_of", "Topic_of", "topic_to", "Topic"} <= set(pack.forms)
    # l-4 uses only a form of the topic: it still counts as a "*" template with 4 topics
    l4 = next(t for t in pack.templates if t.id == "l-4")
    assert l4.draws == ("topic", "enemy", "verb") and pack.template_capacity(l4) == 4 * 3 * 3
    answers = AnswerGenerator(pack, 3, slip_probability=0).generate(60)
    seen = {"l-4": 0, "l-5": 0}
    for answer in answers:
        if answer.template_id == "l-4":
            assert answer.text.startswith("Of-" + answer.topic + " again!")
        if answer.template_id == "l-5":
            assert answer.topic == "parks" and "to-parks" in answer.text
        seen[answer.template_id] = seen.get(answer.template_id, 0) + 1
    assert seen["l-4"] and seen["l-5"]
    picker = QuestionPicker(pack, [q for q in pack.questions if q.id == "q-6"], random.Random(1))
    for answer in answers[:10]:
        assert picker.question_for(answer) == (f"What now to-{answer.topic}?", "q-6")


def test_same_seed_same_answers_with_forms(write_pack: PackWriter, base_files: dict[str, Any]) -> None:
    pack = load_pack_dir(write_pack(declined(base_files)))
    first = [a.text for a in AnswerGenerator(pack, 9).generate(80)]
    assert first == [a.text for a in AnswerGenerator(pack, 9).generate(80)]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda f: f["placeholders.yaml"]["declensions"]["topic"]["roads"].pop("to"),
            "placeholders.yaml [declensions topic: roads]: missing case forms ['to']",
        ),
        (
            lambda f: f["placeholders.yaml"]["declensions"]["topic"].pop("parks"),
            "placeholders.yaml [declensions topic: parks]: value has no case forms",
        ),
        (
            lambda f: f["placeholders.yaml"]["declensions"]["topic"].update(weather={"of": "x", "to": "y"}),
            "placeholders.yaml [declensions topic: weather]: 'weather' is not a value of {topic}",
        ),
        (
            lambda f: f["placeholders.yaml"]["declensions"].update(ghost={"a": {"of": "x"}}),
            "placeholders.yaml [declensions ghost]: {ghost} is not a placeholder",
        ),
        (
            lambda f: f["placeholders.yaml"]["declensions"]["topic"]["taxes"].update({"o-f": "x"}),
            "placeholders.yaml [declensions topic: taxes]: case 'o-f' must be letters and digits",
        ),
        (
            lambda f: f["placeholders.yaml"]["declensions"]["topic"]["taxes"].update(of=""),
            "placeholders.yaml [declensions topic: taxes]: case of: form must be a non-empty string",
        ),
        (
            lambda f: f["templates/loud.yaml"]["templates"][0].update(text="{topic_by} and {enemy}"),
            "templates/loud.yaml [l-1]: unknown placeholder {topic_by} in `text`: case 'by' of {topic} "
            "is not declared",
        ),
        (
            lambda f: f["questions.yaml"]["questions"][0].update(text="And {Topic_by}?"),
            "questions.yaml [q-1]: unknown placeholder {Topic_by} in `text`: case 'by' of {topic}",
        ),
        (
            lambda f: f["placeholders.yaml"]["placeholders"].update(topic_of=["x"]),
            "placeholders.yaml [declensions topic]: case 'of' makes {topic_of}, which is already a placeholder",
        ),
        (
            lambda f: f["placeholders.yaml"].update(declensions=["topic"]),
            "placeholders.yaml [declensions]: `declensions` must map a placeholder",
        ),
    ],
)
def test_broken_declensions_name_file_item_and_problem(
    write_pack: PackWriter, base_files: dict[str, Any], edit: Any, expected: str
) -> None:
    files = declined(base_files)
    edit(files)
    problems = problems_of(write_pack(files))
    assert any(expected in p for p in problems), problems


def test_freeform_questions_load_and_are_checked(write_pack: PackWriter, base_files: dict[str, Any]) -> None:
    good = [
        {"id": "ff-1", "topic": "roads", "text": "Why are the potholes still there?"},
        {"id": "ff-2", "topic": "taxes", "text": "Will you cut the sales tax?"},
    ]
    base_files["freeform.yaml"] = {"questions": good}
    pack = load_pack_dir(write_pack(base_files))
    assert [(q.id, q.topic) for q in pack.freeform_questions] == [("ff-1", "roads"), ("ff-2", "taxes")]
    assert pack.counts()["freeform_questions"] == 2
    base_files["freeform.yaml"] = {
        "questions": [
            *good,
            {"id": "ff-1", "topic": "roads", "text": "Again?"},
            {"id": "ff-3", "topic": "weather", "text": "Rain?"},
            {"id": "ff-4", "topic": "parks", "text": "What about {topic}?"},
            {"id": "ff-5", "topic": "parks", "text": "  "},
            {"id": "ff-6", "topic": "parks", "text": "Two\nlines?"},
        ]
    }
    problems = problems_of(write_pack(base_files))
    for expected in (
        "freeform.yaml [ff-1]: duplicate question id",
        "freeform.yaml [ff-3]: topic 'weather' is not a value of {topic}",
        "freeform.yaml [ff-4]: `text` is a finished question: no braces",
        "freeform.yaml [ff-5]: `text` must be a non-empty string",
        "freeform.yaml [ff-6]: `text` must be one line",
    ):
        assert any(expected in p for p in problems), (expected, problems)


def test_a_pack_without_freeform_or_declensions_has_none(write_pack: PackWriter) -> None:
    pack = load_pack_dir(write_pack())
    assert pack.freeform_questions == () and pack.declensions == {}
    assert set(pack.forms) == {"Topic", "Enemy", "Verb"}
