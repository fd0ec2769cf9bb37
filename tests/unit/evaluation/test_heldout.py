"""Held-out files in both shapes, and bad lines named by number."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from talklike.common.errors import InvalidArgument
from talklike.evaluation.heldout import freeform_items, read_heldout
from talklike.packs.loader import BUILTIN_PACKS_DIR, load_pack_dir

SYSTEM = {"role": "system", "content": "Persona."}
USER = {"role": "user", "content": "Otázka?"}


def test_reference_as_last_message_or_beside_the_chat(tmp_path: Path) -> None:
    path = tmp_path / "heldout.jsonl"
    lines = [
        {"messages": [SYSTEM, USER, {"role": "assistant", "content": "Odpověď A"}], "style": "ironie"},
        {"messages": [SYSTEM, USER], "reference": "Odpověď B", "topic": "daně"},
        {"messages": [USER]},
    ]
    path.write_text(
        "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n", encoding="utf-8"
    )
    items = read_heldout(path)
    assert [i.reference for i in items] == ["Odpověď A", "Odpověď B", ""]
    assert [i.prompt for i in items] == [[SYSTEM, USER], [SYSTEM, USER], [USER]]
    assert (items[0].style, items[1].topic, items[0].question) == ("ironie", "daně", "Otázka?")
    assert len(read_heldout(path, limit=2)) == 2


@pytest.mark.parametrize(
    ("line", "needle"),
    [("not json", "line 2"), (json.dumps({"messages": [SYSTEM]}), "line 2 has no user question")],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "heldout.jsonl"
    path.write_text(json.dumps({"messages": [USER]}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match=needle):
        read_heldout(path)


def test_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        read_heldout(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InvalidArgument, match="no questions"):
        read_heldout(tmp_path / "empty.jsonl")


def test_freeform_questions_are_asked_like_heldout_ones() -> None:
    pack = load_pack_dir(BUILTIN_PACKS_DIR / "babis")
    items = freeform_items(BUILTIN_PACKS_DIR / "babis")
    assert len(items) == len(pack.freeform_questions) >= 60
    first = items[0]
    # The same chat shape as generation's heldout.jsonl: the pack's system prompt, then the question.
    assert first.prompt == [
        {"role": "system", "content": pack.system_prompt},
        {"role": "user", "content": pack.freeform_questions[0].text},
    ]
    assert (first.source, first.reference, first.topic) == ("freeform", "", pack.freeform_questions[0].topic)
    assert len(freeform_items(BUILTIN_PACKS_DIR / "babis", limit=3)) == 3


def test_a_pack_without_freeform_questions_gives_none(tmp_path: Path) -> None:
    shutil.copytree(BUILTIN_PACKS_DIR / "babis", tmp_path / "babis")
    (tmp_path / "babis" / "freeform.yaml").unlink()
    assert freeform_items(tmp_path / "babis") == []


def test_heldout_items_are_template_sourced(tmp_path: Path) -> None:
    path = tmp_path / "heldout.jsonl"
    path.write_text(json.dumps({"messages": [SYSTEM, USER], "reference": "x"}) + "\n", encoding="utf-8")
    assert read_heldout(path)[0].source == "template"
