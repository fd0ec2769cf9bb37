"""The before/after benchmark against a real inference service (tiny model, a LoRA adapter) on loopback,
with the LLM judge served by an OpenAI-compatible HTTP server on loopback (fake_judge.py): template
held-out questions and the built-in babis pack's free-form questions, every request sent at once."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import grpc
import pytest
from fake_judge import SIGNATURE, judge_server
from openpyxl import load_workbook
from talklike.common.testing import running_service
from talklike.evaluation.heldout import freeform_items, read_heldout
from talklike.evaluation.judge import PairwiseJudge
from talklike.evaluation.lexicon import lexicon_for_pack
from talklike.evaluation.metrics import METRICS
from talklike.evaluation.runner import EvalSettings, eval_calls, run_eval
from talklike.inference.client import InferenceClient
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings
from talklike.packs.loader import BUILTIN_PACKS_DIR
from tiny_adapters import make_adapter

QUESTIONS = [
    ("Jak hodnotíte inflaci?", "inflace"),
    ("Co říkáte na Brusel?", "migrace"),
    ("Proč rostou ceny energií?", "ceny energií"),
    ("Co vzkážete opozici?", "korupce"),
]
FREEFORM = 2
PACK = BUILTIN_PACKS_DIR / "babis"


def write_heldout(path: Path) -> None:
    lines = []
    for i, (question, topic) in enumerate(QUESTIONS):
        messages = [
            {"role": "system", "content": "Jsi persona."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "To je kampaň! Já jsem makal.\nAndrej Babiš"},
        ]
        lines.append(
            json.dumps(
                {"messages": messages, "style": ["emotivni", "ironie"][i % 2], "topic": topic},
                ensure_ascii=False,
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def test_eval_writes_every_question_both_answers_and_scores(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_adapter(home, "persona")
    write_heldout(home / "heldout.jsonl")
    items = read_heldout(home / "heldout.jsonl") + freeform_items(PACK, limit=FREEFORM)
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
            items,
            "persona",
            lexicon_for_pack(PACK),
            home / "reports" / "r1",
            "r1",
            EvalSettings(max_new_tokens=16, concurrency=0),
            judge,
            calls.append,
        )
        client.close()
    # Two answers per question, two scores per template question (free-form ones have no reference).
    assert sum(calls) == eval_calls(items) == len(QUESTIONS) * 4 + FREEFORM * 2
    assert (
        result.perplexity_before
        and result.perplexity_after
        and result.perplexity_before != result.perplexity_after
    )
    with paths["csv"].open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["question"] for r in rows] == [q for q, _ in QUESTIONS] + [
        i.question for i in items[-FREEFORM:]
    ]
    assert [r["source"] for r in rows] == ["template"] * len(QUESTIONS) + ["freeform"] * FREEFORM
    for column in ("real_words", "not_language", "loop", "relevant", "opening"):
        assert all(f"{column}_before" in r and f"{column}_after" in r for r in rows), column
    assert all(0 <= float(r["real_words_after"]) <= 1 and r["loop_after"] in {"0", "1"} for r in rows)
    # A random tiny model may stop at once on a question, but every row has both sides scored.
    assert all(r["words_before"].isdigit() and r["words_after"].isdigit() for r in rows)
    assert [r["answer_after"] for r in rows] != [
        r["answer_before"] for r in rows
    ]  # the adapter changes answers
    assert {r["style"] for r in rows} == {"emotivni", "ironie", ""}  # free-form questions have no style
    sheet = load_workbook(paths["xlsx"])["results"]
    assert sheet.max_row == len(rows) + 1
    summary = json.loads(paths["summary"].read_text())
    assert summary["questions"] == len(rows) and summary["perplexity"]["before"] > 1
    assert summary["sources"] == {"template": len(QUESTIONS), "freeform": FREEFORM}
    for block in ("overall", "template", "freeform"):
        for metric in METRICS:
            entry = summary["metrics"][block][metric.key]
            assert "p_value" in entry and entry["after"]["n"] >= 0, (block, metric.key)
            if metric.kind == "rate":
                low, high = entry["after"]["ci"]
                assert low <= entry["after"]["value"] <= high, (block, metric.key)
    ppl = summary["metrics"]["template"]["perplexity"]
    assert ppl["before"]["ci"][0] <= ppl["before"]["value"] <= ppl["before"]["ci"][1]
    assert summary["metrics"]["freeform"]["perplexity"]["before"]["value"] is None  # no references
    page = paths["html"].read_text()
    assert page.count("<tr>") >= len(rows) and 'class="ci"' in page
    assert len(judged) == 2 * len(rows)  # each pair asked in both orders
    assert all(r["judge"] in {"after", "before", "tie"} for r in rows)
    rates = summary["judge"]
    assert rates["model"] == "fair"
    assert rates["after_win_rate"] + rates["before_win_rate"] + rates["tie_rate"] == pytest.approx(1)
