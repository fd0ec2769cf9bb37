"""The before/after benchmark against a real inference service (tiny model, a LoRA adapter) on loopback,
with the LLM judge served by an OpenAI-compatible HTTP server on loopback (fake_judge.py)."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import grpc
import pytest
import yaml
from fake_judge import SIGNATURE, judge_server
from openpyxl import load_workbook
from talklike.common.testing import running_service
from talklike.evaluation.heldout import read_heldout
from talklike.evaluation.judge import PairwiseJudge
from talklike.evaluation.lexicon import lexicon_for_pack
from talklike.evaluation.runner import EvalSettings, run_eval
from talklike.inference.client import InferenceClient
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings
from tiny_adapters import make_adapter

QUESTIONS = [
    "Jak hodnotíte inflaci?",
    "Co říkáte na Brusel?",
    "Proč rostou ceny energií?",
    "Co vzkážete opozici?",
]


def write_pack(directory: Path) -> None:
    directory.mkdir(parents=True)
    persona = {
        "name": "test",
        "language": "cs",
        "signature": "Andrej Babiš",
        "catchphrases": ["to je kampaň", "makal jsem"],
    }
    (directory / "persona.yaml").write_text(yaml.safe_dump(persona, allow_unicode=True))
    (directory / "placeholders.yaml").write_text(
        yaml.safe_dump({"placeholders": {"nepritel": ["Brusel", "Piráti"]}}, allow_unicode=True)
    )
    (directory / "slips.yaml").write_text(
        yaml.safe_dump({"slips": [{"id": "s", "find": "^", "replace": "Proste "}]})
    )


def write_heldout(path: Path) -> None:
    lines = []
    for i, question in enumerate(QUESTIONS):
        messages = [
            {"role": "system", "content": "Jsi persona."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "To je kampaň! Já jsem makal.\nAndrej Babiš"},
        ]
        lines.append(
            json.dumps(
                {"messages": messages, "style": ["emotivni", "ironie"][i % 2], "topic": "x"},
                ensure_ascii=False,
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def test_eval_writes_every_question_both_answers_and_scores(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_adapter(home, "persona")
    write_pack(home / "packs" / "test")
    write_heldout(home / "heldout.jsonl")
    settings = InferenceSettings(
        home=home, base_model="tiny", port=0, metrics_port=0, http_port=0, preload_adapters="persona"
    )
    async with (
        judge_server() as (judge_url, judged),
        running_service(create_service(settings), settings) as srv,
    ):
        client = InferenceClient(grpc.insecure_channel(srv.address))
        judge = PairwiseJudge(judge_url, "fair", "a Czech populist politician", SIGNATURE)
        calls: list[int] = []
        result, paths = await asyncio.to_thread(
            run_eval,
            client,
            read_heldout(home / "heldout.jsonl"),
            "persona",
            lexicon_for_pack(home / "packs" / "test"),
            home / "reports" / "r1",
            "r1",
            EvalSettings(max_new_tokens=16),
            judge,
            calls.append,
        )
        client.close()
    assert sum(calls) == len(QUESTIONS) * 4  # two answers and two scores per question
    assert (
        result.perplexity_before
        and result.perplexity_after
        and result.perplexity_before != result.perplexity_after
    )
    with paths["csv"].open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["question"] for r in rows] == QUESTIONS
    # A random tiny model may stop at once on a question, but every row has both sides scored.
    assert all(r["words_before"].isdigit() and r["words_after"].isdigit() for r in rows)
    assert [r["answer_after"] for r in rows] != [
        r["answer_before"] for r in rows
    ]  # the adapter changes answers
    assert {r["style"] for r in rows} == {"emotivni", "ironie"}
    sheet = load_workbook(paths["xlsx"])["results"]
    assert sheet.max_row == len(QUESTIONS) + 1
    summary = json.loads(paths["summary"].read_text())
    assert summary["questions"] == len(QUESTIONS) and summary["perplexity"]["before"] > 1
    assert paths["html"].read_text().count("<tr>") >= len(QUESTIONS)
    assert len(judged) == 2 * len(QUESTIONS)  # each pair asked in both orders
    assert all(r["judge"] in {"after", "before", "tie"} for r in rows)
    rates = summary["judge"]
    assert rates["model"] == "fair"
    assert rates["after_win_rate"] + rates["before_win_rate"] + rates["tie_rate"] == pytest.approx(1)
