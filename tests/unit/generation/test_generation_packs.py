"""The pack loader: valid packs load with the right counts; every broken pack says file, item and problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from talklike.common.errors import InvalidArgument, NotFound
from talklike.packs.loader import PackInvalid, describe, list_packs, load_pack, load_pack_dir

PackWriter = Callable[..., Path]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PackInvalid) as info:
        load_pack_dir(path)
    return [str(p) for p in info.value.problems]


def test_base_pack_loads_with_counts(write_pack: PackWriter) -> None:
    pack = load_pack_dir(write_pack())
    assert pack.counts()["templates"] == 5
    assert pack.style_ids == ("loud", "calm")
    assert pack.topics == ("taxes", "roads", "schools", "parks")
    # l-1: 4 topics x 3 enemies x 3 verbs; l-2: 4 x 3; l-3 (fixed topic): 3 x 3; c-1: 4 x 3; c-2: 3 x 3 x 4
    assert pack.combinations() == 36 + 12 + 9 + 12 + 36


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda f: f["templates/loud.yaml"]["templates"][0].update(text="{topic} and {ghost}"),
            "templates/loud.yaml [l-1]: unknown placeholder {ghost}",
        ),
        (
            lambda f: f["placeholders.yaml"]["placeholders"].update(enemy=[]),
            "placeholders.yaml [enemy]: empty vocabulary",
        ),
        (
            lambda f: f["templates/calm.yaml"]["templates"][0].update(style="sleepy"),
            "templates/calm.yaml [c-1]: style 'sleepy' is not declared in styles.yaml",
        ),
        (
            lambda f: f["templates/calm.yaml"]["templates"][1].update(id="l-1"),
            "templates/loud.yaml [l-1]: duplicate template id",
        ),
        (
            lambda f: f["templates/loud.yaml"]["templates"][1].update(text="{topic} is bad. Mini Sig"),
            "templates/loud.yaml [l-2]: `text` contains the signature",
        ),
        (
            lambda f: f["templates/loud.yaml"]["templates"][1].update(text="{topic} costs {a lot}"),
            "templates/loud.yaml [l-2]: stray brace",
        ),
        (
            lambda f: f["templates/loud.yaml"]["templates"][2].update(topic="weather"),
            "templates/loud.yaml [l-3]: topic 'weather' is not a value of {topic}",
        ),
        (
            lambda f: f["templates/loud.yaml"]["templates"][1].update(text="no topic here"),
            'templates/loud.yaml [l-2]: topic "*" needs {topic} in the text',
        ),
        (
            lambda f: f["slips.yaml"]["slips"][0].update(find="(unclosed"),
            "slips.yaml [um]: bad regular expression",
        ),
        (
            lambda f: f["slips.yaml"]["slips"][0].update(replace=r"\2"),
            "slips.yaml [um]: bad regular expression or replacement: invalid group reference",
        ),
        (
            lambda f: f["questions.yaml"].update(
                questions=[
                    {"id": "q-2", "topic": "*", "styles": ["loud"], "text": "Why so angry about {topic}?"},
                    {"id": "q-4", "topic": "roads", "styles": ["*"], "text": "When will the roads be fixed?"},
                ]
            ),
            'questions.yaml [calm]: style has no question with topic "*"',
        ),
        (
            lambda f: f["questions.yaml"]["questions"][0].update(styles=["angry"]),
            "questions.yaml [q-1]: styles ['angry'] are not declared",
        ),
        (
            lambda f: f["persona.yaml"].update(name="other"),
            "persona.yaml [name]: `name` is 'other' but the directory",
        ),
        (
            lambda f: f["persona.yaml"].update(language="English"),
            "persona.yaml [language]: `language` 'English'",
        ),
        (
            lambda f: f["persona.yaml"].update(satire="yes please"),
            "persona.yaml [satire]: `satire` must be true",
        ),
        (lambda f: f["persona.yaml"].update(topic_placeholder="subject"), "persona.yaml [topic_placeholder]"),
        (lambda f: f.pop("slips.yaml"), "slips.yaml: file is missing"),
        (lambda f: f.update({"styles.yaml": "styles: [unclosed\n"}), "styles.yaml: not valid YAML at line"),
        (lambda f: f.update({"questions.yaml": b"questions: \xff\n"}), "questions.yaml: not valid UTF-8"),
    ],
)
def test_broken_pack_names_file_item_and_problem(
    write_pack: PackWriter, base_files: dict[str, Any], edit: Any, expected: str
) -> None:
    edit(base_files)
    problems = problems_of(write_pack(base_files))
    assert any(expected in p for p in problems), problems


def test_style_without_templates_is_reported(write_pack: PackWriter, base_files: dict[str, Any]) -> None:
    base_files["styles.yaml"]["styles"].append({"id": "sad", "name": "Sad", "description": "Sighs."})
    assert "templates/ [sad]: style has no templates (styles are mixed evenly)" in problems_of(
        write_pack(base_files)
    )


def test_all_problems_are_reported_at_once(write_pack: PackWriter, base_files: dict[str, Any]) -> None:
    base_files["placeholders.yaml"]["placeholders"]["verb"] = []
    base_files["templates/calm.yaml"]["templates"][0]["style"] = "nope"
    with pytest.raises(PackInvalid) as info:
        load_pack_dir(write_pack(base_files))
    assert len(info.value.problems) >= 2
    assert "is invalid" in info.value.message and "placeholders.yaml [verb]" in info.value.message


def test_load_pack_finds_user_packs_and_refuses_unknown_names(tmp_path: Path, write_pack: PackWriter) -> None:
    write_pack()
    assert load_pack("mini", tmp_path).source == "user"
    assert load_pack("puffington", tmp_path).source == "builtin"
    with pytest.raises(NotFound) as info:
        load_pack("no-such-pack", tmp_path)
    assert "known packs:" in info.value.message and "mini" in info.value.message
    with pytest.raises(InvalidArgument) as bad:
        load_pack("../etc", tmp_path)
    assert bad.value.field == "pack"


def test_list_packs_lists_a_broken_pack_with_its_problems(
    tmp_path: Path, write_pack: PackWriter, base_files: dict[str, Any]
) -> None:
    base_files["persona.yaml"]["name"] = "broken"
    base_files["placeholders.yaml"]["placeholders"]["verb"] = []
    write_pack(base_files, name="broken")
    write_pack()
    entries = {e.name: e for e in list_packs(tmp_path)}
    assert entries["mini"].pack is not None and not entries["mini"].problems
    assert entries["broken"].pack is None
    assert [str(p) for p in entries["broken"].problems] == [
        "placeholders.yaml [verb]: empty vocabulary: give a non-empty list of values",
        "templates/calm.yaml [c-2]: unknown placeholder {verb} in `text` (declare it in placeholders.yaml)",
        "templates/loud.yaml [l-1]: unknown placeholder {verb} in `text` (declare it in placeholders.yaml)",
        "templates/loud.yaml [l-3]: unknown placeholder {verb} in `text` (declare it in placeholders.yaml)",
    ]
    assert "puffington" in entries


def test_edited_pack_is_reloaded(tmp_path: Path, write_pack: PackWriter, base_files: dict[str, Any]) -> None:
    write_pack(base_files)
    first = load_pack("mini", tmp_path)
    assert load_pack("mini", tmp_path) is first  # cached
    base_files["placeholders.yaml"]["placeholders"]["verb"].append("dance")
    write_pack(base_files)
    assert len(load_pack("mini", tmp_path).placeholders["verb"]) == 4


@pytest.mark.parametrize("name", [entry.name for entry in list_packs(None)])
def test_builtin_packs_are_valid_and_described(name: str) -> None:
    info = describe(load_pack(name))
    assert info["templates"] >= 40 and info["styles"] >= 5 and info["placeholders"] >= 5
    assert isinstance(info["satire"], bool) and info["signature"]
    for style in info["styles_detail"]:
        assert style["templates"] >= 8
    if name == "babis":  # the seed's pack, as issue 3 asks for it
        assert info["templates"] >= 400 and info["language"] == "cs" and info["signature"] == "Andrej Babiš"
        assert all(style["templates"] >= 60 for style in info["styles_detail"])
        assert {"tema", "nepritel", "cinnost", "kritika", "emotivni_vyraz"} <= set(
            info["placeholders_detail"]
        )
