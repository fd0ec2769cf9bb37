"""The generation service through real gRPC on loopback (the shared runtime, its interceptors and error mapping)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from talklike.common.testing import RunningService, running_service
from talklike.generation.servicer import create_service
from talklike.generation.settings import GenerationSettings
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc

Service = tuple[RunningService, pb_grpc.GenerationServiceStub, Path]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    home = tmp_path / "home"
    settings = GenerationSettings(home=home, port=0, metrics_port=0)
    async with running_service(create_service(settings), settings) as srv:
        yield srv, pb_grpc.GenerationServiceStub(srv.channel()), home


async def generate(stub: pb_grpc.GenerationServiceStub, **fields: object) -> list[pb.GenerateDatasetResponse]:
    return [event async for event in stub.GenerateDataset(pb.GenerateDatasetRequest(**fields))]  # type: ignore[arg-type]


async def test_list_packs_reports_counts_and_broken_user_packs(service: Service) -> None:
    _srv, stub, home = service
    broken = home / "packs" / "halfdone"
    broken.mkdir(parents=True)
    (broken / "persona.yaml").write_text("name: halfdone\n")
    reply = await stub.ListPacks(pb.ListPacksRequest())
    packs = {p.name: p for p in reply.packs}
    puff = packs["puffington"]
    assert (puff.template_count, puff.style_count, puff.language, puff.source) == (50, 5, "en", "builtin")
    assert [s.id for s in puff.styles] == ["bluster", "deflection", "nostalgia", "spin", "folksy"]
    assert puff.combination_count > 10_000 and not puff.problems
    assert packs["halfdone"].source == "user"
    assert any("styles.yaml: file is missing" in p for p in packs["halfdone"].problems)


async def test_generate_streams_progress_then_a_summary(service: Service) -> None:
    _srv, stub, home = service
    events = await generate(stub, pack="puffington", count=900, seed=3, out="run1", batch_size=300)
    progress = [e.progress for e in events[:-1]]
    assert all(e.HasField("progress") for e in events[:-1]) and events[-1].HasField("summary")
    answers = [p for p in progress if p.stage == "answers"]
    assert [p.done for p in answers] == [300, 600, 900] and all(p.total == 900 for p in answers)
    assert [p.stage for p in progress][-1] == "write"
    summary = events[-1].summary
    out = home / "datasets" / "run1"
    assert summary.out_dir == str(out.resolve())
    assert (summary.count, summary.train_count, summary.val_count, summary.heldout_count) == (
        900,
        810,
        90,
        50,
    )
    assert dict(summary.styles) == {s: 180 for s in ("bluster", "deflection", "nostalgia", "spin", "folksy")}
    assert summary.language_error_rate == pytest.approx(0.15, abs=0.001)
    files = {f.name: f for f in summary.files}
    assert files["all.jsonl"].line_count == 900
    assert files["all.jsonl"].size_bytes == (out / "all.jsonl").stat().st_size
    assert json.loads(summary.stats_json) == json.loads((out / "stats.json").read_text())
    assert summary.tokens.encoding == "o200k_base" and summary.tokens.example_count == 900


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": 1_000_001}, "count"),
        ({"count": -5}, "count"),
        ({"count": 10, "batch_size": 0}, "batch_size"),
        ({"count": 10, "slip_probability": 1.01}, "slip_probability"),
        ({"count": 10, "slip_probability": -0.5}, "slip_probability"),
        ({"count": 10, "out": "../../etc"}, "out"),
        ({"count": 10, "out": "/tmp/elsewhere"}, "out"),
        ({"count": 10, "question_mode": pb.QUESTION_MODE_LLM}, "llm.base_url"),
    ],
)
async def test_bad_requests_are_invalid_argument_naming_the_field(
    service: Service, fields: dict[str, object], field: str
) -> None:
    _srv, stub, _home = service
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await generate(stub, pack="puffington", **fields)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(f"{field}:")
    assert ("talklike-field", field) in tuple(info.value.trailing_metadata() or ())


async def test_unknown_pack_is_not_found(service: Service) -> None:
    _srv, stub, _home = service
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await generate(stub, pack="nobody", count=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "puffington" in (info.value.details() or "")


async def test_a_foreign_directory_is_not_overwritten(service: Service) -> None:
    _srv, stub, home = service
    mine = home / "datasets" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await generate(stub, pack="puffington", count=5, out="mine")
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (mine / "notes.txt").read_text() == "keep"


async def test_two_runs_into_one_directory_at_once_are_refused(service: Service) -> None:
    _srv, stub, home = service
    results = await asyncio.gather(
        generate(stub, pack="puffington", count=3000, out="same", batch_size=50),
        generate(stub, pack="puffington", count=3000, out="same", batch_size=50),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(failures) == 1 and failures[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "another run is writing" in (failures[0].details() or "")
    assert len((home / "datasets" / "same" / "all.jsonl").read_text().splitlines()) == 3000
    # once the first is done, the directory can be written again
    assert (await generate(stub, pack="puffington", count=10, out="same"))[-1].summary.count == 10


async def test_validate_quarantines_bad_lines_and_keeps_the_rest(service: Service) -> None:
    _srv, stub, home = service
    await generate(stub, pack="puffington", count=20, seed=1, out="small", heldout_count=0)
    good = (home / "datasets" / "small" / "all.jsonl").read_bytes().splitlines()
    content = b"\n".join(
        [good[0], b"{oops", good[1], b"\xc3\x28", b'{"messages": [{"role": "robot", "content": "x"}]}']
    )
    reply = await stub.ValidateDataset(pb.ValidateDatasetRequest(content=content, file_name="mixed.jsonl"))
    assert (reply.line_count, reply.valid_count, reply.invalid_count) == (5, 2, 3)
    assert [(p.line_number, p.field_path) for p in reply.problems] == [
        (2, ""),
        (4, ""),
        (5, "messages[0].role"),
    ]
    assert "not valid UTF-8" in reply.problems[1].reason
    assert Path(reply.valid_path).read_bytes() == good[0] + b"\n" + good[1] + b"\n"
    assert len(Path(reply.invalid_path).read_text().splitlines()) == 3
    assert Path(reply.valid_path).parent == (home / "datasets" / "mixed-validated").resolve()
    assert not reply.meets_minimum_examples

    by_path = await stub.ValidateDataset(
        pb.ValidateDatasetRequest(path="datasets/small/all.jsonl", max_problems=1)
    )
    assert (by_path.valid_count, by_path.invalid_count, by_path.meets_minimum_examples) == (20, 0, True)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ValidateDataset(pb.ValidateDatasetRequest(path="../outside.jsonl"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.ValidateDataset(pb.ValidateDatasetRequest(path="datasets/none.jsonl"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_estimate_cost(service: Service) -> None:
    _srv, stub, _home = service
    await generate(stub, pack="puffington", count=40, seed=2, out="c", val_fraction=0.0, heldout_count=0)
    reply = await stub.EstimateCost(
        pb.EstimateCostRequest(path="datasets/c/train.jsonl", model="gpt-4o-mini-2024-07-18")
    )
    assert reply.tokens.example_count == 40 and reply.epochs == 3 and reply.epochs_defaulted  # 120 ≥ 100
    assert reply.billed_tokens == 3 * reply.billed_tokens_per_epoch == 3 * reply.tokens.total_tokens
    assert reply.cost_usd == pytest.approx(reply.billed_tokens * 3.0 / 1e6)
    fixed = await stub.EstimateCost(
        pb.EstimateCostRequest(path="datasets/c/train.jsonl", model="gpt-3.5-turbo", epochs=2)
    )
    assert fixed.tokens.encoding == "cl100k_base" and fixed.epochs == 2 and not fixed.epochs_defaulted
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.EstimateCost(pb.EstimateCostRequest(path="datasets/c/train.jsonl", model="mystery-model"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("model:")
