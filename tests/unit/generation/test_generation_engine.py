"""Answers and datasets: determinism, shares, slips, dedupe, questions that fit, held-out disjointness."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from talklike.common.chat_data.jsonl import check_record
from talklike.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from talklike.generation.dataset import DatasetBuilder, DatasetSpec, resolve_out, validate_numbers
from talklike.generation.dedupe import DuplicateIndex, fold, near_keys
from talklike.generation.engine import AnswerGenerator, slip_quota, style_schedule
from talklike.packs.loader import list_packs, load_pack, load_pack_dir

PackWriter = Callable[..., Path]
BUILTIN = [entry.name for entry in list_packs(None)]


def build(pack_name: str, out: Path, count: int = 3000, seed: int = 7, **kwargs: Any) -> dict[str, Any]:
    spec = DatasetSpec(pack=load_pack(pack_name), count=count, seed=seed, out_dir=out, **kwargs)
    return asyncio.run(DatasetBuilder(spec).run()).stats


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("pack_name", BUILTIN)
def test_same_request_gives_byte_identical_files(tmp_path: Path, pack_name: str) -> None:
    build(pack_name, tmp_path / "a")
    build(pack_name, tmp_path / "b")
    names = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert "all.jsonl" in names and "invalid/rejected.jsonl" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    build(pack_name, tmp_path / "c", seed=8)
    assert (tmp_path / "c" / "all.jsonl").read_bytes() != (tmp_path / "a" / "all.jsonl").read_bytes()


@pytest.mark.parametrize("pack_name", BUILTIN)
@pytest.mark.parametrize("seed", [1, 42])
def test_3000_answers_meet_the_share_and_slip_bounds(tmp_path: Path, pack_name: str, seed: int) -> None:
    pack = load_pack(pack_name)
    stats = build(pack_name, tmp_path / "d", seed=seed)
    examples = read_jsonl(tmp_path / "d" / "all.jsonl")
    meta = read_jsonl(tmp_path / "d" / "meta.jsonl")
    assert len(examples) == stats["count"] == 3000
    # measured from the files, not trusted from stats.json
    shares = Counter(m["style"] for m in meta)
    for style in pack.style_ids:
        assert abs(shares[style] / 3000 - 1 / len(pack.style_ids)) <= 0.03
    slipped = sum(1 for m in meta if m["slip"])
    assert abs(slipped / 3000 - 0.15) <= 0.02
    assert stats["language_error_rate"] == round(slipped / 3000, 4)
    for record in examples:
        assert check_record(record) == []
        roles = [m["role"] for m in record["messages"]]
        answer = record["messages"][2]["content"]
        assert roles == ["system", "user", "assistant"]
        assert answer.endswith("\n" + pack.signature)
        assert not re.search(r"\{[A-Za-z_][A-Za-z0-9_]*\}", answer + record["messages"][1]["content"])
    assert stats["templates_used"] >= 0.9 * len(pack.templates)


def test_slip_probability_is_honoured_at_the_extremes(tmp_path: Path, write_pack: PackWriter) -> None:
    pack = load_pack_dir(write_pack())
    for probability, expected in ((0.0, 0), (1.0, 40), (0.5, 20)):
        answers = AnswerGenerator(pack, 3, slip_probability=probability, batch_size=7).generate(40)
        assert sum(1 for a in answers if a.slip_id) == expected
        for answer in answers:
            if answer.slip_id == "um":
                assert answer.text.startswith("Um, ")
            if answer.slip_id == "like":
                assert answer.text.endswith(" Like.\nMini Sig")


def test_style_schedule_and_slip_quota_are_exact() -> None:
    import random

    schedule = style_schedule(("a", "b", "c"), 10, random.Random(1))
    assert sorted(Counter(schedule).values()) == [3, 3, 4]
    slipped = 0
    done = 0
    for size in (7, 7, 7, 7, 2):
        slipped += slip_quota(0.15, done, size, slipped)
        done += size
    assert slipped == round(0.15 * 30)


def test_duplicates_are_replaced_so_the_count_is_met(write_pack: PackWriter) -> None:
    pack = load_pack_dir(write_pack())
    rejected: list[Any] = []
    answers = AnswerGenerator(pack, 5, batch_size=10, on_reject=rejected.append).generate(80)
    assert len(answers) == 80  # of 105 possible: most of the pack, so many draws collide
    texts = [a.text for a in answers]
    assert len(set(texts)) == 80
    bodies = [near_keys(a.text.replace("Um, ", "").replace(" Like.", "")) for a in answers]
    assert len({k[0] for k in bodies}) == 80, "no two answers differ only by a slip, case or punctuation"
    assert rejected and all(
        r.reason.startswith(("exact duplicate of answer", "near duplicate of answer")) for r in rejected
    )


def test_a_pack_that_runs_dry_says_so(write_pack: PackWriter) -> None:
    pack = load_pack_dir(write_pack())
    with pytest.raises(FailedPrecondition) as info:
        AnswerGenerator(pack, 1).generate(pack.combinations() + 10)
    assert "cannot produce more distinct answers" in info.value.message


def test_near_duplicate_keys() -> None:
    index = DuplicateIndex()
    reason, keys = index.check("Taxes are TOO high!")
    assert reason == ""
    index.add("Taxes are TOO high!", keys, "answer 1")
    assert index.check("Taxes are TOO high!")[0] == "exact duplicate of answer 1"
    assert index.check("taxes, are too   high")[0].startswith("near duplicate of answer 1 (same text")
    assert index.check("Are taxes too high?")[0].startswith("near duplicate of answer 1 (the same words")
    assert index.check("Taxes are too low!")[0] == ""
    assert fold("Žluťoučký kůň ÚPĚL!") == "zlutoucky kun upel"


def test_questions_fit_the_answers_topic_and_style(tmp_path: Path, write_pack: PackWriter) -> None:
    pack = load_pack_dir(write_pack())
    spec = DatasetSpec(pack=pack, count=60, seed=2, out_dir=tmp_path / "q", heldout_count=0)
    builder = DatasetBuilder(spec)
    answers = asyncio.run(builder.answers())
    by_id = {q.id: q for q in pack.questions}
    used = Counter()
    for example in builder.template_questions(answers):
        question = by_id[example.question_id]
        assert question.fits(example.answer.topic, example.answer.style)
        if question.topic == "*" and "{topic}" in question.text.raw:
            assert example.answer.topic in example.question
        used[example.question_id] += 1
    assert len(used) >= 4, "questions are varied"


def test_heldout_questions_share_no_question_with_the_examples(tmp_path: Path) -> None:
    stats = build("puffington", tmp_path / "h", count=2000, heldout_count=40)
    heldout = read_jsonl(tmp_path / "h" / "heldout.jsonl")
    questions = {fold(e["messages"][1]["content"]) for e in read_jsonl(tmp_path / "h" / "all.jsonl")}
    assert len(heldout) == stats["split"]["heldout"] == 40
    reserved = set(stats["heldout"]["question_templates"])
    assert reserved and stats["heldout"]["disjoint_templates"]
    train_templates = {m["question_template"] for m in read_jsonl(tmp_path / "h" / "meta.jsonl")}
    assert not reserved & train_templates
    for row in heldout:
        assert fold(row["question"]) not in questions
        assert row["question_template"] in reserved
        assert row["reference"].endswith("\nMayor Reginald Puffington")
        assert row["messages"][-1] == {"role": "user", "content": row["question"]}
    assert len({row["style"] for row in heldout}) == 5


def test_split_and_stats(tmp_path: Path) -> None:
    stats = build("puffington", tmp_path / "s", count=500, val_fraction=0.2)
    train = read_jsonl(tmp_path / "s" / "train.jsonl")
    val = read_jsonl(tmp_path / "s" / "val.jsonl")
    everything = read_jsonl(tmp_path / "s" / "all.jsonl")
    assert (len(train), len(val)) == (400, 100) == (stats["split"]["train"], stats["split"]["val"])
    assert sorted(map(json.dumps, train + val)) == sorted(map(json.dumps, everything))
    assert stats["tokens"]["all"]["examples"] == 500 and stats["tokens"]["all"]["encoding"] == "o200k_base"
    assert (
        stats["tokens"]["all"]["total"] == stats["tokens"]["train"]["total"] + stats["tokens"]["val"]["total"]
    )
    assert set(stats) >= {"count", "styles", "language_error_rate", "templates_used", "tokens"}
    rejected = read_jsonl(tmp_path / "s" / "invalid" / "rejected.jsonl")
    assert len(rejected) == sum(stats["duplicates_removed"].values())


def test_a_rerun_replaces_a_dataset_but_never_a_foreign_directory(tmp_path: Path) -> None:
    build("puffington", tmp_path / "r", count=20, heldout_count=2)
    build("puffington", tmp_path / "r", count=30, heldout_count=2)
    assert len(read_jsonl(tmp_path / "r" / "all.jsonl")) == 30
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(AlreadyExists):
        build("puffington", foreign, count=20, heldout_count=2)
    assert (foreign / "thesis.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 300, 0.15, 0.1, 50), "count"),
        ((1_000_001, 300, 0.15, 0.1, 50), "count"),
        ((10, 0, 0.15, 0.1, 50), "batch_size"),
        ((10, 300, -0.1, 0.1, 50), "slip_probability"),
        ((10, 300, 1.5, 0.1, 50), "slip_probability"),
        ((10, 300, float("nan"), 0.1, 50), "slip_probability"),
        ((10, 300, 0.1, 0.9, 50), "val_fraction"),
        ((10, 300, 0.1, 0.1, -1), "heldout_count"),
    ],
)
def test_bad_numbers_name_their_field(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_numbers(*args)
    assert info.value.field == field


def test_output_paths_stay_in_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert resolve_out(home, "D", "x") == home / "datasets" / "D"
    assert resolve_out(home, "datasets/E", "x") == home / "datasets" / "E"
    assert resolve_out(home, "", "babis-10-s1") == home / "datasets" / "babis-10-s1"
    assert resolve_out(home, str(home / "other" / "F"), "x") == home / "other" / "F"
    for bad in ("/etc/x", "../../outside", str(tmp_path / "elsewhere"), "datasets"):
        with pytest.raises(InvalidArgument) as info:
            resolve_out(home, bad, "x")
        assert info.value.field == "out"
