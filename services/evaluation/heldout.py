"""Held-out questions: chat JSONL lines whose last message is the persona's reference answer.

Lines may carry the answer's ``style`` and ``topic`` beside ``messages``, and the reference
answer either as the last (assistant) message or as ``reference`` (the generation service
writes the question's chat and the reference beside it), so the report can break results
down by style. Lines are read by the shared chat-JSONL reader (``common.chat_data``); a bad line is
reported with its number, never skipped silently: an evaluation on fewer questions than the file has
would not be the evaluation the user asked for.

``freeform_items`` adds the pack's hand-written questions (freeform.yaml), which no template
produced: the same chat shape as a held-out line (the pack's system prompt, then the question),
no reference answer, tagged ``source="freeform"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from talklike.common.chat_data.jsonl import iter_file_lines, parse_line
from talklike.common.errors import InvalidArgument


@dataclass(frozen=True)
class HeldoutItem:
    """A question (the chat up to the user's turn) and the persona's reference answer."""

    prompt: list[dict[str, str]]
    reference: str
    style: str = ""
    topic: str = ""
    #: "template" (a held-out line of the dataset) or "freeform" (the pack's freeform.yaml).
    source: str = "template"

    @property
    def question(self) -> str:
        return self.prompt[-1]["content"]


def read_heldout(path: Path, limit: int = 0) -> list[HeldoutItem]:
    """All items of ``path`` (the first ``limit`` when given); InvalidArgument naming the line otherwise."""
    if not path.is_file():
        raise InvalidArgument(
            "heldout", f"{path} does not exist; generate a dataset first (it writes heldout.jsonl)"
        )
    items: list[HeldoutItem] = []
    for number, raw in iter_file_lines(path):
        if not raw.strip():
            continue
        record, problems = parse_line(raw)
        try:
            if problems:
                raise ValueError(problems[0][1])
            messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(
                "heldout", f"line {number} is not a chat example ({exc.__class__.__name__}: {exc})"
            ) from exc
        if messages and messages[-1]["role"] == "assistant":
            prompt, reference = messages[:-1], messages[-1]["content"]
        else:  # the generation service's heldout.jsonl: the question's chat, the answer beside it
            prompt, reference = messages, str(record.get("reference", ""))
        if not prompt or prompt[-1]["role"] != "user":
            raise InvalidArgument("heldout", f"line {number} has no user question before the answer")
        items.append(
            HeldoutItem(prompt, reference, str(record.get("style", "")), str(record.get("topic", "")))
        )
        if limit and len(items) >= limit:
            break
    if not items:
        raise InvalidArgument("heldout", f"{path} has no questions")
    return items


def freeform_items(pack_directory: Path, limit: int = 0) -> list[HeldoutItem]:
    """The pack's free-form questions (the first ``limit`` when given) as evaluation items.

    Each is asked as the dataset's held-out questions are: the pack's ``system_prompt`` as the
    system message, the question as the user message (generation writes heldout.jsonl the same
    way), so before/after prompts of both sources are comparable. An empty list when the pack
    has no freeform.yaml; the pack's own validation errors (PackInvalid) when it is broken.
    """
    from talklike.packs.loader import load_pack_dir

    pack = load_pack_dir(pack_directory)
    questions = pack.freeform_questions[:limit] if limit else pack.freeform_questions
    return [
        HeldoutItem(
            prompt=[{"role": "system", "content": pack.system_prompt}, {"role": "user", "content": q.text}],
            reference="",
            topic=q.topic,
            source="freeform",
        )
        for q in questions
    ]
