"""A hostile JSONL file: every bad line reported with its number and reason, quarantined, the rest usable."""

from __future__ import annotations

import json
from pathlib import Path

from talklike.common.chat_data.jsonl import (
    MAX_LINE_BYTES,
    check_record,
    iter_file_lines,
    split_lines,
    validate_lines,
    write_outputs,
)

GOOD = {
    "messages": [
        {"role": "system", "content": "You are Mini."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello.\nMini Sig"},
    ]
}


def good(n: int) -> bytes:
    record = json.loads(json.dumps(GOOD))
    record["messages"][1]["content"] = f"Question {n}?"
    return json.dumps(record, ensure_ascii=False).encode()


def line(record: object) -> bytes:
    return json.dumps(record).encode()


HOSTILE: list[tuple[bytes, str, str]] = [
    # (raw line, field_path, reason fragment)
    (b'{"messages": [', "", "not valid JSON"),
    (b"\xff\xfe{}", "", "not valid UTF-8: byte 0xff at column 1"),
    (b"", "", "blank line"),
    (b"   ", "", "blank line"),
    (b"[1, 2]", "", "expected a JSON object"),
    (b'"just a string"', "", "expected a JSON object"),
    (b'{"messages": [], "messages": []}', "messages", "duplicate key 'messages'"),
    (b'{"messages": [{"role": "user", "content": NaN}]}', "", "NaN is not allowed"),
    (b"[" * 100_000 + b"]" * 100_000, "", "nested too deeply"),
    (line({"prompt": "x", "completion": "y"}), "messages", 'missing "messages"'),
    (line({"messages": {"role": "user"}}), "messages", '"messages" must be a list, got object'),
    (line({"messages": []}), "messages", '"messages" is empty'),
    (line({"messages": ["hi"]}), "messages[0]", "a message must be an object, got string"),
    (line({"messages": [{"role": "bot", "content": "x"}]}), "messages[0].role", "role 'bot' is not one of"),
    (line({"messages": [{"content": "x"}]}), "messages[0].role", "missing role"),
    (
        line({"messages": [{"role": 3, "content": "x"}]}),
        "messages[0].role",
        "role must be a string, got number",
    ),
    (
        line({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}),
        "messages[1].content",
        "empty content",
    ),
    (
        line({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}),
        "messages[1].content",
        "missing content",
    ),
    (
        line({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ["a"]}]}),
        "messages[1].content",
        "content must be a string, got array",
    ),
    (
        b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad \\ud800 half"}]}',
        "messages[1].content",
        "unpaired surrogate",
    ),
    (
        line({"messages": [{"role": "user", "content": "only a question"}]}),
        "messages",
        "no assistant message",
    ),
    (
        line(
            {
                "messages": [
                    {"role": "user", "content": "q", "weight": 1},
                    {"role": "assistant", "content": "a"},
                ]
            }
        ),
        "messages[0].weight",
        "assistant messages only",
    ),
    (
        line(
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a", "weight": 2},
                ]
            }
        ),
        "messages[1].weight",
        "weight must be 0 or 1",
    ),
    (
        line(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "tone": 1}]}
        ),
        "messages[1].tone",
        "unknown message key 'tone'",
    ),
    (
        line(
            {
                "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                "style": "x",
            }
        ),
        "style",
        "unknown key 'style'",
    ),
    (b"x" * (MAX_LINE_BYTES + 1), "", f"the limit is {MAX_LINE_BYTES} bytes"),
]


def hostile_file() -> bytes:
    rows = [b"\xef\xbb\xbf" + good(0)]
    for i, (raw, _, _) in enumerate(HOSTILE):
        rows.append(raw)
        rows.append(good(i + 1))
    rows.append(good(1))  # an exact duplicate of line 3
    return b"\r\n".join(rows) + b"\n"


def test_every_hostile_line_is_reported_with_number_and_reason(tmp_path: Path) -> None:
    report = validate_lines(split_lines(hostile_file()))
    assert report.lines == 2 + 2 * len(HOSTILE)
    bad = {b.line_number: b for b in report.bad}
    for i, (_, field_path, fragment) in enumerate(HOSTILE):
        number = 2 + 2 * i
        assert number in bad, f"line {number} ({fragment}) was not reported"
        assert any(fragment in p.reason and p.field_path == field_path for p in bad[number].problems), (
            fragment,
            bad[number].problems,
        )
    duplicate = report.lines
    assert [p.reason for p in bad[duplicate].problems] == ["exact duplicate of line 3"]
    assert len(report.bad) == len(HOSTILE) + 1
    assert len(report.valid) == len(HOSTILE) + 1
    assert "byte order mark" in report.warnings[0]
    assert report.meets_minimum


def test_quarantine_keeps_raw_lines_and_the_valid_file_is_clean(tmp_path: Path) -> None:
    report = validate_lines(split_lines(hostile_file()))
    paths = write_outputs(report, tmp_path / "out", {"lines": report.lines})
    valid_lines = paths["valid"].read_bytes().splitlines()
    assert len(valid_lines) == len(report.valid)
    assert validate_lines(iter_file_lines(paths["valid"])).bad == []
    quarantined = [json.loads(x) for x in paths["invalid"].read_text(encoding="utf-8").splitlines()]
    assert [q["line_number"] for q in quarantined] == [b.line_number for b in report.bad]
    utf8 = next(q for q in quarantined if q["line_number"] == 4)
    assert utf8["raw"].startswith("\\xff\\xfe")
    assert json.loads(paths["report"].read_text())["lines"] == report.lines


def test_file_and_bytes_give_the_same_verdict(tmp_path: Path) -> None:
    data = hostile_file()
    file = tmp_path / "h.jsonl"
    file.write_bytes(data)
    from_bytes = validate_lines(split_lines(data))
    from_file = validate_lines(iter_file_lines(file))
    assert [(b.line_number, b.problems) for b in from_bytes.bad] == [
        (b.line_number, b.problems) for b in from_file.bad
    ]


def test_small_and_empty_files_warn() -> None:
    assert "empty" in validate_lines(split_lines(b"")).warnings[0]
    few = validate_lines(split_lines(good(1) + b"\n" + good(2)))
    assert not few.meets_minimum and "at least 10" in few.warnings[-1]


def test_a_valid_record_has_no_problems() -> None:
    assert check_record(GOOD) == []
    weighted = json.loads(json.dumps(GOOD))
    weighted["messages"].append({"role": "assistant", "content": "more", "weight": 0, "name": "mini_1"})
    assert check_record(weighted) == []
