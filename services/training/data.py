"""Chat JSONL → token ids and labels with the loss on assistant tokens only.

The mask is computed, not trusted: the prompt part of an example (everything up to the
assistant's answer, rendered with the model's own chat template and its generation prompt)
must be a prefix of the whole rendered example, and what follows it is the answer. A dataset
in which no example has answer tokens left fails the job (the TRL bug that trains on nothing
must not happen here).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talklike.common.chat_data.jsonl import iter_file_lines, validate_lines

IGNORE = -100


class JobError(Exception):
    """A failure with a machine-readable code and a message for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Encoded:
    """One tokenized example."""

    input_ids: list[int]
    labels: list[int]

    @property
    def answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Bad lines whose reasons a job's error message spells out; the rest are counted and numbered.
REASONS_SHOWN = 20
#: Bad line numbers a job's error message lists at most.
NUMBERS_SHOWN = 1000


def read_examples(path: Path) -> list[list[dict[str, str]]]:
    """The ``messages`` of every line, judged by the same rules as the generation service's ValidateDataset
    (a repeated example is kept: repeating is the trainer's business, not an error).

    A dataset with any bad line is refused, every bad line numbered (invalid UTF-8 included): a job
    must not quietly train on part of what it was given. To train on the good lines, run
    ``talklike validate`` on the file, which quarantines the bad ones under ``invalid/`` and writes
    ``valid.jsonl``, and train on that.
    """
    report = validate_lines(iter_file_lines(path), dedupe=False)
    if report.bad:
        problems = report.problems
        shown = "; ".join(
            f"line {p.line_number}{f' {p.field_path}' if p.field_path else ''}: {p.reason}"
            for p in problems[:REASONS_SHOWN]
        )
        numbers = [bad.line_number for bad in report.bad]
        listed = ", ".join(str(n) for n in numbers[:NUMBERS_SHOWN])
        more = f" and {len(numbers) - NUMBERS_SHOWN:,} more" if len(numbers) > NUMBERS_SHOWN else ""
        raise JobError(
            "invalid_file",
            f"{path.name} has {len(numbers):,} bad line(s) of {report.lines:,} (lines {listed}{more}): {shown}; "
            "the dataset is refused as a whole: fix those lines, or run `talklike validate` on it and train on "
            "the valid.jsonl it writes (the bad lines are quarantined there with their reasons)",
        )
    if not report.valid:
        raise JobError("invalid_file", f"{path.name} has no examples")
    return [line.messages for line in report.valid]


def dataset_language(path: Path) -> str:
    """The persona language a generated dataset declares (its ``stats.json``, beside it or one folder up).

    A moderated split lives in ``<dataset>/moderated/``; other datasets declare nothing ("").
    """
    for folder in (path.parent, path.parent.parent):
        try:
            stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
            return str(stats["pack"]["language"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return ""


def encode(tokenizer: Any, messages: list[dict[str, str]], max_tokens: int) -> Encoded:
    """Token ids of the whole chat, labels only on the final assistant answer (truncated to max_tokens)."""
    if messages[-1]["role"] != "assistant":
        return Encoded([], [])
    prompt = _ids(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True))
    full = _ids(tokenizer.apply_chat_template(messages, tokenize=True))
    if full[: len(prompt)] != prompt:
        raise JobError(
            "chat_template_mismatch",
            "the model's chat template renders the prompt differently inside the whole chat, so the answer "
            "tokens cannot be located; use a model whose template is prefix-stable",
        )
    full = full[:max_tokens]
    labels = [IGNORE] * min(len(prompt), len(full)) + full[len(prompt) :]
    return Encoded(full, labels)


def _ids(value: Any) -> list[int]:
    if isinstance(value, dict) or hasattr(value, "input_ids"):
        value = value["input_ids"]
    return [int(v) for v in value]


def encode_all(
    tokenizer: Any, examples: list[list[dict[str, str]]], max_tokens: int, what: str
) -> list[Encoded]:
    encoded = [encode(tokenizer, m, max_tokens) for m in examples]
    usable = [e for e in encoded if e.answer_tokens > 0]
    if not usable:
        raise JobError(
            "no_assistant_tokens",
            f"no example in the {what} set has assistant tokens to learn from after masking and truncation to "
            f"{max_tokens} tokens; each example must end with an assistant message, and max_sequence_tokens must "
            "leave room for it",
        )
    return usable
