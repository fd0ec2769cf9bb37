"""Held-out files in both shapes, and bad lines named by number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from talklike.common.errors import InvalidArgument
from talklike.evaluation.heldout import read_heldout

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
