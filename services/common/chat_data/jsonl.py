"""Validation of chat JSONL against OpenAI's chat fine-tuning format, line by line.

A user's file may be anything: broken JSON, invalid UTF-8, a BOM, CRLF line ends, NaN,
duplicate keys, lone surrogates, nesting deep enough to crash a recursive parser, a
multi-megabyte line. Every line is judged on its own and every problem is reported with the
line number, the reason and where in the record it is (``messages[2].role``); bad lines are
quarantined with their raw text, never dropped silently, and the good lines stay usable.
The generator checks its own output with the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talklike.common.paths import atomic_writer

ROLES = ("system", "user", "assistant")
TOP_LEVEL_KEYS = ("messages", "tools", "parallel_tool_calls", "functions")
MESSAGE_KEYS = ("role", "content", "name", "weight")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: A line longer than this is rejected unread (OpenAI's longest examples are a few hundred KB).
MAX_LINE_BYTES = 4 * 1024 * 1024
#: OpenAI refuses training files with fewer examples.
MIN_EXAMPLES = 10
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Problem:
    """One problem of one line."""

    line_number: int
    reason: str
    field_path: str = ""


@dataclass(frozen=True)
class ValidLine:
    """A line that passed: its raw bytes (written back unchanged) and its messages."""

    line_number: int
    raw: bytes
    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class BadLine:
    """A quarantined line: raw bytes and every problem found in it."""

    line_number: int
    raw: bytes
    problems: tuple[Problem, ...]


@dataclass
class ValidationReport:
    """The verdict on a whole file."""

    lines: int = 0
    valid: list[ValidLine] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [p for line in self.bad for p in line.problems]

    @property
    def meets_minimum(self) -> bool:
        return len(self.valid) >= MIN_EXAMPLES


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _bad_text(value: str) -> str:
    """A reason when ``value`` cannot be written as UTF-8 (a lone surrogate), else ""."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"contains an unpaired surrogate ({value[error.start]!a}) that is not valid Unicode text"
    return ""


def check_record(record: Any) -> list[tuple[str, str]]:
    """``(field_path, reason)`` for everything wrong with one parsed record; empty when valid."""
    if not isinstance(record, dict):
        return [("", f'expected a JSON object with a "messages" list, got {_kind(record)}')]
    problems: list[tuple[str, str]] = []
    for key in record:
        if key not in TOP_LEVEL_KEYS:
            problems.append((key, f"unknown key {key!r} (a chat example has {', '.join(TOP_LEVEL_KEYS)})"))
    if "messages" not in record:
        problems.append(("messages", 'missing "messages"'))
        return problems
    messages = record["messages"]
    if not isinstance(messages, list):
        problems.append(("messages", f'"messages" must be a list, got {_kind(messages)}'))
        return problems
    if not messages:
        problems.append(("messages", '"messages" is empty'))
        return problems
    learnable = 0
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append((at, f"a message must be an object, got {_kind(message)}"))
            continue
        for key in message:
            if key not in MESSAGE_KEYS:
                problems.append(
                    (f"{at}.{key}", f"unknown message key {key!r} (allowed: {', '.join(MESSAGE_KEYS)})")
                )
        role = message.get("role")
        if "role" not in message:
            problems.append((f"{at}.role", "missing role"))
        elif not isinstance(role, str):
            problems.append((f"{at}.role", f"role must be a string, got {_kind(role)}"))
        elif role not in ROLES:
            problems.append((f"{at}.role", f"role {role!r} is not one of {', '.join(ROLES)}"))
        content = message.get("content")
        if "content" not in message:
            problems.append((f"{at}.content", "missing content"))
        elif not isinstance(content, str):
            problems.append((f"{at}.content", f"content must be a string, got {_kind(content)}"))
        elif not content.strip():
            problems.append((f"{at}.content", "empty content"))
        else:
            bad = _bad_text(content)
            if bad:
                problems.append((f"{at}.content", f"content {bad}"))
        if "name" in message:
            name = message["name"]
            if not isinstance(name, str) or not NAME_RE.match(name):
                problems.append((f"{at}.name", "name must be 1-64 letters, digits, _ or -"))
        weight = message.get("weight", 1)
        if "weight" in message:
            if role != "assistant":
                problems.append((f"{at}.weight", "weight is allowed on assistant messages only"))
            elif isinstance(weight, bool) or weight not in (0, 1):
                problems.append((f"{at}.weight", f"weight must be 0 or 1, got {weight!r}"))
        if role == "assistant" and weight != 0:
            learnable += 1
    if learnable == 0 and not any(path.endswith(".role") for path, _ in problems):
        problems.append(("messages", "no assistant message to learn from (add one, or set its weight to 1)"))
    return problems


def split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line)`` of JSONL bytes; ``\\r\\n`` ends are accepted, a final newline is optional."""
    number = 0
    start = 0
    size = len(data)
    while start < size:
        end = data.find(b"\n", start)
        if end < 0:
            end = size
        number += 1
        line = data[start:end]
        yield number, line[:-1] if line.endswith(b"\r") else line
        start = end + 1


def iter_file_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Like ``split_lines`` for a file, read as a stream (large files do not sit in memory twice)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            line = line[:-1] if line.endswith(b"\n") else line
            yield number, line[:-1] if line.endswith(b"\r") else line


def parse_line(raw: bytes) -> tuple[Any, list[tuple[str, str]]]:
    """(record, problems) of one raw line; the record is None when the line cannot be parsed."""
    if len(raw) > MAX_LINE_BYTES:
        return None, [("", f"line is {len(raw)} bytes; the limit is {MAX_LINE_BYTES} bytes")]
    if not raw.strip():
        return None, [("", "blank line (JSONL has one JSON object on every line)")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [
            (
                "",
                f"not valid UTF-8: byte 0x{raw[error.start]:02x} at column {error.start + 1} ({error.reason})",
            )
        ]
    try:
        record = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except _DuplicateKey as error:
        return None, [(str(error), f"duplicate key {str(error)!r} in an object")]
    except json.JSONDecodeError as error:
        return None, [("", f"not valid JSON: {error.msg} at column {error.colno}")]
    except ValueError as error:
        return None, [("", f"not valid JSON: {error}")]
    except RecursionError:
        return None, [("", "not valid JSON for a chat example: nested too deeply")]
    return record, []


def canonical(messages: list[dict[str, Any]]) -> str:
    """The messages as canonical JSON: equal texts mean an exact duplicate example."""
    return json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def validate_lines(lines: Iterable[tuple[int, bytes]], *, dedupe: bool = True) -> ValidationReport:
    """Judge every line; exact duplicates of an earlier valid line are quarantined too (unless not ``dedupe``:
    training takes a repeated example as it is)."""
    report = ValidationReport()
    seen: dict[str, int] = {}
    for number, raw in lines:
        report.lines = number
        body = raw
        if number == 1 and body.startswith(BOM):
            body = body[len(BOM) :]
            report.warnings.append("the file starts with a UTF-8 byte order mark; it was ignored")
        record, problems = parse_line(body)
        if record is not None and not problems:
            problems = check_record(record)
        if not problems:
            key = canonical(record["messages"])
            first = seen.get(key) if dedupe else None
            if first is not None:
                problems = [("", f"exact duplicate of line {first}")]
            else:
                seen[key] = number
                report.valid.append(ValidLine(number, body, record["messages"]))
                continue
        report.bad.append(
            BadLine(number, raw, tuple(Problem(number, reason, path) for path, reason in problems))
        )
    if report.lines == 0:
        report.warnings.append("the file is empty")
    if len(report.valid) < MIN_EXAMPLES:
        report.warnings.append(
            f"only {len(report.valid)} valid examples; OpenAI fine-tuning needs at least {MIN_EXAMPLES}"
        )
    return report


def quarantine_record(bad: BadLine) -> dict[str, Any]:
    """What ``invalid/lines.jsonl`` holds for a bad line: number, reasons and the raw text."""
    return {
        "line_number": bad.line_number,
        "problems": [{"field_path": p.field_path, "reason": p.reason} for p in bad.problems],
        "raw": bad.raw.decode("utf-8", errors="backslashreplace"),
    }


def write_outputs(report: ValidationReport, out_dir: Path, summary: dict[str, Any]) -> dict[str, Path]:
    """Write ``valid.jsonl``, ``invalid/lines.jsonl`` and ``report.json`` atomically; their paths."""
    paths = {
        "valid": out_dir / "valid.jsonl",
        "invalid": out_dir / "invalid" / "lines.jsonl",
        "report": out_dir / "report.json",
    }
    with atomic_writer(paths["valid"], "wb") as handle:
        for line in report.valid:
            handle.write(line.raw + b"\n")
    with atomic_writer(paths["invalid"]) as handle:
        for bad in report.bad:
            handle.write(json.dumps(quarantine_record(bad), ensure_ascii=False) + "\n")
    with atomic_writer(paths["report"]) as handle:
        json.dump(summary, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")
    return paths
