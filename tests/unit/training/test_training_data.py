"""A training dataset is judged line by line, every bad line numbered (issue 15, cause 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from talklike.training.data import JobError, read_examples


def line(question: str, answer: str) -> bytes:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return json.dumps({"messages": messages}).encode() + b"\n"


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(
        line("q1?", "a1.")
        + b'{"messages": [{"role": "user", "content": "caf\xff"}]}\n'  # invalid UTF-8
        + line("q3?", "a3.")
        + b"{not json\n"
        + b'{"mesages": []}\n'
        + line("q6?", "a6.")
    )
    with pytest.raises(JobError) as caught:
        read_examples(path)
    message = caught.value.message
    assert caught.value.code == "invalid_file"
    assert "3 bad line(s) of 6 (lines 2, 4, 5)" in message
    assert "line 2: not valid UTF-8" in message and "line 4: not valid JSON" in message
    assert "UnicodeDecodeError" not in message


def test_a_clean_dataset_is_read(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(line("q1?", "a1.") + line("q2?", "a2."))
    assert [m[-1]["content"] for m in read_examples(path)] == ["a1.", "a2."]
