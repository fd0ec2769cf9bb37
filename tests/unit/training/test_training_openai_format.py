"""OpenAI's chat fine-tuning format rules, checked at validating_files before anything is uploaded.

A file OpenAI would reject costs an upload and a failed remote job; refusing it locally names
the example and the rule instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from talklike.training.data import JobError
from talklike.training.openai_backend import validate_openai_file


def good(i: int) -> dict[str, object]:
    return {
        "messages": [
            {"role": "system", "content": "Jsi persona."},
            {"role": "user", "content": f"Otázka {i}?"},
            {"role": "assistant", "content": f"Odpověď {i}."},
        ]
    }


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_valid_file_counts_its_examples(tmp_path: Path) -> None:
    assert validate_openai_file(write(tmp_path / "t.jsonl", [good(i) for i in range(12)]), "training") == 12


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "has 9 examples; OpenAI requires at least 10"),
        (
            {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
            "line 4 messages[0].role: role 'robot' is not one of system, user, assistant",
        ),
        (
            {"messages": [{"role": "user", "content": "Jen otázka?"}]},
            "line 4 messages: no assistant message to learn from",
        ),
        (
            {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "y"}]},
            "line 4 messages[0].content: empty content",
        ),
        ({"text": "not a chat"}, "line 4 text: unknown key 'text'"),
    ],
)
def test_each_rule_names_the_example(tmp_path: Path, bad: dict[str, object] | None, message: str) -> None:
    rows = [good(i) for i in range(9)]
    if bad is not None:
        rows.insert(3, bad)
    with pytest.raises(JobError) as info:
        validate_openai_file(write(tmp_path / "t.jsonl", rows), "training")
    assert info.value.code == "invalid_file" and message in info.value.message
