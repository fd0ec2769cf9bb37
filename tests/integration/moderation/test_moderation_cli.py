"""``talklike moderate FILE|text|eval`` as a person runs them, against a real service on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli_runner import serving, talklike
from talklike.moderation.servicer import create_service
from talklike.moderation.settings import ModerationSettings


@pytest.fixture
async def cli_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    settings = ModerationSettings(home=tmp_path / "home", port=0, metrics_port=0)
    async with serving(create_service(settings), settings, "moderation") as env:
        yield env


def chat(answer: str) -> str:
    return json.dumps(
        {"messages": [{"role": "user", "content": "Otázka?"}, {"role": "assistant", "content": answer}]},
        ensure_ascii=False,
    )


async def test_moderate_a_file_outside_the_home(cli_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "all.jsonl"
    source.write_text(
        "\n".join([chat("Brusel nám krade, to je kampaň!"), chat("Zabiju tě, ty kreténe."), "{broken"])
        + "\n",
        encoding="utf-8",
    )
    result = await talklike(cli_env, "moderate", str(source), "--backend", "local", "--out", "M")
    assert result.exit_code == 0, result.output
    out = Path(cli_env["TALKLIKE_HOME"]) / "datasets" / "M"
    for text in (
        "lines read",
        "quarantined",
        "harassment/threatening",
        "LIKELY BLOCKED",
        "report.md",
        str(out),
    ):
        assert text in result.stdout, text
    assert (out / "moderated.jsonl").read_text("utf-8") == chat("Brusel nám krade, to je kampaň!") + "\n"
    assert len((out / "removed.jsonl").read_text("utf-8").splitlines()) == 1
    as_json = await talklike(
        cli_env, "moderate", "dataset", str(source), "--out", "M", "--action", "annotate", "--json"
    )
    summary = json.loads(as_json.stdout)
    assert (
        summary["kept_count"] == "2"
        and summary["quarantined_count"] == "1"
        and summary["action"] == "MODERATION_ACTION_ANNOTATE"
    )


async def test_bad_input_is_one_sentence_and_a_fix(cli_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "x.jsonl"
    source.write_text(chat("ahoj") + "\n", encoding="utf-8")
    unknown = await talklike(cli_env, "moderate", str(source), "--threshold", "hatred=0.2")
    assert (
        unknown.exit_code == 1 and "unknown category 'hatred'" in unknown.output and "fix:" in unknown.output
    )
    assert "Traceback" not in unknown.output
    malformed = await talklike(cli_env, "moderate", str(source), "--threshold", "hate")
    assert malformed.exit_code == 1 and "CATEGORY=VALUE" in malformed.output
    missing = await talklike(cli_env, "moderate", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1 and "is not a file" in missing.output
    no_key = await talklike(cli_env, "moderate", "text", "ahoj", "--backend", "openai")
    assert no_key.exit_code == 1 and "OPENAI_API_KEY" in no_key.output


async def test_moderate_text_shows_violations(cli_env: dict[str, str]) -> None:
    result = await talklike(cli_env, "moderate", "text", "Brusel nám krade!", "Všichni cikáni jsou krysy.")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("Brusel" in line and "–" in line for line in lines)
    assert any("cikáni" in line and "hate" in line for line in lines)


async def test_eval_prints_precision_and_recall_per_category(cli_env: dict[str, str]) -> None:
    result = await talklike(cli_env, "moderate", "eval", "--split", "test")
    assert result.exit_code == 0, result.output
    for text in (
        "harassment/threatening",
        "sexual/minors",
        "violence/graphic",
        "precision",
        "recall",
        "any (flagged)",
        "satire 0 of",
    ):
        assert text in result.stdout, text
    markdown = await talklike(cli_env, "moderate", "eval", "--markdown")
    assert "| category | support | precision | recall | false positives |" in markdown.stdout
    bad = await talklike(cli_env, "moderate", "eval", "--split", "train")
    assert bad.exit_code == 1 and "split: must be one of dev, test" in bad.output
