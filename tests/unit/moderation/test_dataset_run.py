"""A dataset run end to end in-process: every line kept, removed or quarantined, byte for byte."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from talklike.common.chat_data.jsonl import split_lines
from talklike.common.errors import AlreadyExists
from talklike.moderation.categories import Scores
from talklike.moderation.dataset import moderate_dataset
from talklike.moderation.local import LocalBackend
from talklike.moderation.policy import make_policy

SYSTEM = "Jsi satirický politik, mluvíš hovorovou češtinou a podepisuješ se Andrej Babiš."


def example(answer: str, question: str = "Co říkáte na Brusel?") -> bytes:
    record = {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


class CountingBackend:
    """The real local backend, counting the texts it is asked to score."""

    name = "local"

    def __init__(self) -> None:
        self.inner = LocalBackend()
        self.seen: list[str] = []

    @property
    def model(self) -> str:
        return self.inner.model

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        self.seen.extend(texts)
        return await self.inner.classify(texts)


LINES = [
    example("Brusel nám krade, to je kampaň! Andrej Babiš"),
    example("Zabiju tě, ty kreténe. Andrej Babiš"),
    b"{not json",
    example("Novináři jsou zkorumpovaní. Andrej Babiš"),
    b"\xff\xfe broken utf-8",
    b"",
    b'{"messages": [{"role": "robot", "content": "hi"}]}',
    example("Makal jsem celej život. Andrej Babiš", question="Ty kreténe, zabiju tě."),
    example("Všichni cikáni jsou zloději. Andrej Babiš"),
]


async def run(tmp_path: Path, lines: list[bytes], **policy: Any) -> tuple[Any, CountingBackend]:
    backend = CountingBackend()
    result = await moderate_dataset(
        split_lines(b"\r\n".join(lines) + b"\n"),
        file_name="all.jsonl",
        out_dir=tmp_path / "out",
        backend=backend,
        policy=make_policy(
            policy.get("thresholds", {}), policy.get("roles", []), policy.get("action", "drop"), None, 0.01
        ),
    )
    return result, backend


async def test_every_line_is_accounted_for_and_kept_lines_are_unchanged(tmp_path: Path) -> None:
    progress: list[tuple[str, int, int]] = []
    backend = CountingBackend()

    async def on_progress(stage: str, done: int, total: int) -> None:
        progress.append((stage, done, total))

    result = await moderate_dataset(
        split_lines(b"\n".join(LINES)),
        file_name="all.jsonl",
        out_dir=tmp_path / "out",
        backend=backend,
        policy=make_policy({}, [], "drop", None, 0.01),
        on_progress=on_progress,
    )
    assert (result.lines, result.kept, result.removed, result.quarantined) == (9, 2, 3, 4)
    assert result.kept + result.removed + result.quarantined == result.lines
    out = tmp_path / "out"
    assert (out / "moderated.jsonl").read_bytes() == LINES[0] + b"\n" + LINES[3] + b"\n"
    removed = [json.loads(line) for line in (out / "removed.jsonl").read_text("utf-8").splitlines()]
    assert [r["line_number"] for r in removed] == [2, 8, 9]
    threat = removed[0]
    assert "harassment/threatening" in threat["violations"] and threat["turns"][0]["role"] == "assistant"
    assert threat["turns"][0]["reasons"] and threat["example"]["messages"][2]["content"].startswith("Zabiju")
    assert removed[1]["turns"][0]["role"] == "user", "every turn is checked by default"
    quarantine = [
        json.loads(line) for line in (out / "quarantine/lines.jsonl").read_text("utf-8").splitlines()
    ]
    assert [q["line_number"] for q in quarantine] == [3, 5, 6, 7]
    assert "not valid JSON" in quarantine[0]["problems"][0]["reason"]
    assert "UTF-8" in quarantine[1]["problems"][0]["reason"] and quarantine[1]["raw"].startswith("\\xff")
    assert quarantine[3]["problems"][0]["field_path"] == "messages[0].role"
    assert len(backend.seen) == len(set(backend.seen)) and backend.seen.count(SYSTEM) == 1, "each text once"
    stages = [p[0] for p in progress]
    assert stages[0] == "read" and "moderate" in stages and stages[-1] == "write"
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["counts"]["flagged"] == 3 and report["preflight"]["input"]["verdict"] == "likely_blocked"
    assert report["preflight"]["output"]["verdict"] == "pass"
    assert report["invariant"] == "kept 2 + removed 3 + quarantined 4 = lines 9"
    markdown = (out / "report.md").read_text("utf-8")
    for text in (
        "LIKELY BLOCKED",
        "PASS",
        "| harassment/threatening |",
        "Zabiju tě",
        "| 3 |",
        "About the local backend",
    ):
        assert text in markdown, text


async def test_annotate_keeps_everything_and_lists_the_violations(tmp_path: Path) -> None:
    result, _ = await run(tmp_path, LINES, action="annotate")
    assert (result.kept, result.removed, result.quarantined, result.flagged) == (5, 0, 4, 3)
    out = tmp_path / "out"
    assert len((out / "moderated.jsonl").read_bytes().splitlines()) == 5
    assert len((out / "flagged.jsonl").read_text("utf-8").splitlines()) == 3
    assert not (out / "removed.jsonl").exists()
    assert result.output_preflight.verdict == "likely_blocked"


async def test_only_the_chosen_roles_are_checked(tmp_path: Path) -> None:
    result, backend = await run(tmp_path, LINES, roles=["assistant"])
    assert result.removed == 2, "the threat in the user turn of line 8 is not checked"
    assert SYSTEM not in backend.seen
    assert "OpenAI checks every turn" in result.input_preflight.advice


async def test_thresholds_change_what_is_removed(tmp_path: Path) -> None:
    lenient, _ = await run(
        tmp_path,
        LINES,
        thresholds={name: 1.0 for name in ("harassment", "harassment/threatening", "violence", "hate")},
    )
    assert lenient.removed == 0
    strict, _ = await run(tmp_path, LINES, thresholds={"harassment": 0.05})
    assert strict.removed == 5, "the mild accusations now count too"


async def test_a_foreign_directory_is_not_replaced_but_an_earlier_run_is(tmp_path: Path) -> None:
    await run(tmp_path, LINES)
    again, _ = await run(tmp_path, LINES[:2])
    assert again.lines == 2 and again.kept + again.removed == 2
    foreign = tmp_path / "elsewhere"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(AlreadyExists):
        await moderate_dataset(
            split_lines(LINES[0]),
            file_name="x",
            out_dir=foreign,
            backend=LocalBackend(),
            policy=make_policy({}, [], "drop", None, 0.01),
        )
    assert (foreign / "notes.txt").read_text() == "mine"


async def test_a_byte_order_mark_is_ignored_and_an_empty_file_is_reported(tmp_path: Path) -> None:
    result, _ = await run(tmp_path, [b"\xef\xbb\xbf" + LINES[0]])
    assert result.kept == 1 and "byte order mark" in result.report["warnings"][0]
    assert (tmp_path / "out" / "moderated.jsonl").read_bytes() == LINES[0] + b"\n"
    empty = await moderate_dataset(
        split_lines(b""),
        file_name="empty.jsonl",
        out_dir=tmp_path / "empty",
        backend=LocalBackend(),
        policy=make_policy({}, [], "drop", None, 0.01),
    )
    assert empty.lines == 0 and "the file is empty" in empty.report["warnings"]
    assert empty.input_preflight.verdict == "pass"
