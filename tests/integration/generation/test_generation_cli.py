"""``talklike generate|validate|cost|packs`` as a person runs them, against a real service on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli_runner import serving, talklike
from talklike.generation.servicer import create_service
from talklike.generation.settings import GenerationSettings


@pytest.fixture
async def cli_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    settings = GenerationSettings(home=tmp_path / "home", port=0, metrics_port=0)
    async with serving(create_service(settings), settings, "generation") as env:
        yield env


async def test_generate_twice_gives_identical_files_and_a_summary(cli_env: dict[str, str]) -> None:
    home = Path(cli_env["TALKLIKE_HOME"])
    first = await talklike(
        cli_env, "generate", "--pack", "puffington", "--count", "300", "--seed", "7", "--out", "D"
    )
    assert first.exit_code == 0, first.output
    for text in ("all.jsonl", "train.jsonl", "heldout.jsonl", "language slips", "15.0%", "bluster", "20.0%"):
        assert text in first.stdout
    saved = {p.name: p.read_bytes() for p in (home / "datasets" / "D").glob("*.json*")}
    second = await talklike(
        cli_env, "generate", "--pack", "puffington", "--count", "300", "--seed", "7", "--out", "D"
    )
    assert second.exit_code == 0, second.output
    assert {p.name: p.read_bytes() for p in (home / "datasets" / "D").glob("*.json*")} == saved
    as_json = await talklike(
        cli_env, "generate", "--pack", "puffington", "--count", "50", "--out", "E", "--json"
    )
    stats = json.loads(as_json.stdout)
    assert stats["count"] == 50 and stats["pack"]["name"] == "puffington"


async def test_bad_input_is_one_sentence_and_a_fix(cli_env: dict[str, str]) -> None:
    result = await talklike(cli_env, "generate", "--pack", "puffington", "--count", "0")
    assert result.exit_code == 1
    assert "count: must be between 1 and 1,000,000" in result.output and "fix:" in result.output
    assert "Traceback" not in result.output
    unknown = await talklike(cli_env, "generate", "--pack", "nobody")
    assert unknown.exit_code == 1 and "pack 'nobody' not found" in unknown.output
    outside = await talklike(cli_env, "generate", "--pack", "puffington", "--out", "/etc/talklike")
    assert outside.exit_code == 1 and "outside the data home" in outside.output


async def test_validate_and_cost_a_file_outside_the_home(cli_env: dict[str, str], tmp_path: Path) -> None:
    home = Path(cli_env["TALKLIKE_HOME"])
    await talklike(cli_env, "generate", "--pack", "puffington", "--count", "30", "--seed", "1", "--out", "v")
    good = (home / "datasets" / "v" / "all.jsonl").read_bytes().splitlines()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        b"\n".join([*good[:12], b"{broken", b'{"messages": [{"role": "robot", "content": "x"}]}']) + b"\n"
    )
    result = await talklike(cli_env, "validate", str(mixed))
    assert result.exit_code == 1, "bad lines make validate fail, after reporting them"
    assert "13" in result.stdout and "not valid JSON" in result.stdout and "messages[0].role" in result.stdout
    report = json.loads((await talklike(cli_env, "validate", str(mixed), "--json")).stdout)
    assert (report["valid"], report["invalid"]) == (12, 2)
    assert [p["line_number"] for p in report["problems"]] == [13, 14]
    assert Path(report["valid_path"]).read_bytes() == b"\n".join(good[:12]) + b"\n"

    clean = await talklike(cli_env, "validate", str(home / "datasets" / "v" / "all.jsonl"))
    assert clean.exit_code == 0, clean.output

    cost = await talklike(
        cli_env, "cost", str(mixed), "--model", "gpt-4o-mini-2024-07-18", "--epochs", "2", "--json"
    )
    assert cost.exit_code == 0, cost.output
    bill = json.loads(cost.stdout)
    assert (bill["examples"], bill["invalid_lines"], bill["epochs"]) == (12, 2, 2)
    assert bill["billed_tokens"] == 2 * bill["total_tokens"]
    assert bill["cost_usd"] == pytest.approx(bill["billed_tokens"] * 3 / 1e6, abs=1e-6)
    table = await talklike(cli_env, "cost", str(mixed), "--model", "gpt-4o-mini-2024-07-18")
    assert "estimated cost" in table.stdout and "OpenAI's default" in table.stdout


async def test_packs_list_and_show(cli_env: dict[str, str]) -> None:
    listed = json.loads((await talklike(cli_env, "packs", "list", "--json")).stdout)
    puff = next(p for p in listed if p["name"] == "puffington")
    assert (puff["templates"], puff["styles"], puff["placeholders"]) == (50, 5, 7)
    local = json.loads((await talklike(cli_env, "packs", "list", "--local", "--json")).stdout)
    assert [p["name"] for p in local] == [p["name"] for p in listed]
    shown = await talklike(cli_env, "packs", "show", "puffington", "--json")
    info = json.loads(shown.stdout)
    assert (info["templates"], info["styles"], info["placeholders"]) == (50, 5, 7)
    table = await talklike(cli_env, "packs", "show", "puffington")
    assert "{rival}" in table.stdout and "Mayor Reginald Puffington" in table.stdout
    missing = await talklike(cli_env, "packs", "show", "nobody")
    assert missing.exit_code == 1 and "not found" in missing.output


async def test_packs_show_asks_the_service_for_the_pack_and_samples(cli_env: dict[str, str]) -> None:
    shown = await talklike(cli_env, "packs", "show", "puffington", "--sample", "3", "--seed", "5", "--json")
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert len(info["samples"]) == 3 and {"style", "topic", "template_id", "question", "answer"} == set(
        info["samples"][0]
    )
    assert info["placeholders_detail"]["rival"] > 0 and info["topics_list"] and info["combinations_log10"] > 0
    again = json.loads(
        (
            await talklike(cli_env, "packs", "show", "puffington", "--sample", "3", "--seed", "5", "--json")
        ).stdout
    )
    assert again["samples"] == info["samples"], "the same seed draws the same examples"
    printed = await talklike(cli_env, "packs", "show", "puffington", "--sample", "2")
    assert printed.exit_code == 0 and "Q: " in printed.stdout and "A: " in printed.stdout
    too_many = await talklike(cli_env, "packs", "show", "puffington", "--sample", "101")
    assert too_many.exit_code == 1 and "count" in too_many.output


async def test_packs_diff_asks_the_service(cli_env: dict[str, str]) -> None:
    same = json.loads((await talklike(cli_env, "packs", "diff", "puffington", "puffington", "--json")).stdout)
    assert same["sizes"]["templates"] == {"a": 50, "b": 50, "delta": 0}
    assert same["template_words"]["jaccard"] == 1.0 and same["styles"]["only_a"] == []
    assert all(row["in"] == "both" for row in same["placeholders"].values())
    missing = await talklike(cli_env, "packs", "diff", "puffington", "nobody")
    assert missing.exit_code == 1 and "not found" in missing.output
