"""The moderation service over real gRPC on loopback: Moderate, ModerateDataset, bad input by field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from talklike.common.testing import RunningService, running_service
from talklike.generation.dataset import DatasetBuilder, DatasetSpec
from talklike.moderation.servicer import create_service
from talklike.moderation.settings import ModerationSettings
from talklike.packs.loader import list_packs, load_pack
from talklike.v1 import common_pb2
from talklike.v1 import moderation_pb2 as pb
from talklike.v1 import moderation_pb2_grpc as pb_grpc


@pytest.fixture
async def service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RunningService, Path]]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    home = tmp_path / "home"
    settings = ModerationSettings(home=home, port=0, metrics_port=0, max_batch_texts=1200)
    async with running_service(create_service(settings), settings) as srv:
        yield srv, home


def stub(srv: RunningService) -> pb_grpc.ModerationServiceStub:
    return pb_grpc.ModerationServiceStub(srv.channel())


def line(answer: str) -> bytes:
    return json.dumps(
        {
            "messages": [
                {"role": "system", "content": "Jsi politik."},
                {"role": "user", "content": "Co na to říkáte?"},
                {"role": "assistant", "content": answer},
            ]
        },
        ensure_ascii=False,
    ).encode()


async def test_moderate_scores_every_text_in_order(service: tuple[RunningService, Path]) -> None:
    srv, _ = service
    texts = ["Brusel nám krade!", "Zabiju tě, ty kreténe.", "I want to kill myself tonight."]
    reply = await stub(srv).Moderate(pb.ModerateRequest(texts=texts, thresholds={"harassment": 0.9}))
    assert reply.backend == "local" and reply.model.startswith("talklike-lexicon")
    assert [r.flagged for r in reply.results] == [False, True, True]
    threat = reply.results[1]
    assert len(threat.category_scores) == 13 and threat.categories["harassment/threatening"]
    assert "harassment" not in threat.policy_violations, "the request's threshold (0.9) applies"
    assert "harassment/threatening" in threat.policy_violations and threat.reasons
    assert reply.thresholds["harassment"] == pytest.approx(0.9) and reply.thresholds["hate"] == pytest.approx(
        0.3
    )
    assert "self-harm/intent" in reply.results[2].policy_violations


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ModerateRequest(), "texts"),
        (pb.ModerateRequest(texts=["x"] * 1201), "texts"),
        (pb.ModerateRequest(texts=["x"], thresholds={"hatred": 0.3}), 'thresholds["hatred"]'),
        (pb.ModerateRequest(texts=["x"], thresholds={"hate": 1.5}), 'thresholds["hate"]'),
    ],
)
async def test_bad_moderate_requests_name_the_field(
    service: tuple[RunningService, Path], request_: pb.ModerateRequest, field: str
) -> None:
    srv, _ = service
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(srv).Moderate(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ")
    assert ("talklike-field", field) in tuple(caught.value.trailing_metadata() or ())


async def test_the_openai_backend_without_a_key_says_which_variable_to_set(
    service: tuple[RunningService, Path],
) -> None:
    srv, _ = service
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(srv).Moderate(pb.ModerateRequest(texts=["x"], backend=pb.MODERATION_BACKEND_OPENAI))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "OPENAI_API_KEY" in caught.value.details()


async def test_a_dataset_in_the_home_streams_progress_then_the_summary(
    service: tuple[RunningService, Path],
) -> None:
    srv, home = service
    source = home / "datasets" / "d" / "all.jsonl"
    source.parent.mkdir(parents=True)
    lines = [line("Brusel nám krade!"), b"{oops", line("Všichni cikáni jsou krysy."), b"\xc3\x28"]
    source.write_bytes(b"\n".join(lines) + b"\n")
    request = pb.ModerateDatasetRequest(
        path="datasets/d/all.jsonl",
        policy=pb.ModerationPolicy(roles=[common_pb2.CHAT_ROLE_ASSISTANT], flagged_share_limit=0.5),
    )
    events = [event async for event in stub(srv).ModerateDataset(request)]
    assert all(e.HasField("progress") for e in events[:-1]) and events[-1].HasField("summary")
    assert {e.progress.stage for e in events[:-1]} == {"read", "moderate", "write"}
    summary = events[-1].summary
    assert summary.out_dir == str(home / "datasets" / "d" / "moderated"), "default: beside the input"
    assert (summary.line_count, summary.kept_count, summary.removed_count, summary.quarantined_count) == (
        4,
        1,
        1,
        2,
    )
    assert [p.line_number for p in summary.problems] == [2, 4]
    assert summary.input_preflight.flagged_share == pytest.approx(0.5)
    assert summary.input_preflight.verdict == pb.PREFLIGHT_VERDICT_PASS, "0.5 is not over the limit 0.5"
    assert summary.output_preflight.verdict == pb.PREFLIGHT_VERDICT_PASS
    hate = next(c for c in summary.categories if c.category == "hate")
    assert hate.violation_count == 1 and hate.threshold == pytest.approx(0.3)
    assert Path(summary.moderated_path).read_bytes() == lines[0] + b"\n"
    assert Path(summary.report_markdown_path).is_file() and Path(summary.flagged_path).name == "removed.jsonl"
    assert summary.text_count == 2, "only the assistant turns were sent to the backend"


@pytest.mark.parametrize(
    ("request_", "code", "text"),
    [
        (pb.ModerateDatasetRequest(path="../outside.jsonl"), grpc.StatusCode.INVALID_ARGUMENT, "path: "),
        (pb.ModerateDatasetRequest(path="datasets/none.jsonl"), grpc.StatusCode.NOT_FOUND, "none.jsonl"),
        (pb.ModerateDatasetRequest(), grpc.StatusCode.INVALID_ARGUMENT, "source: "),
        (pb.ModerateDatasetRequest(content=b"{}", out="/etc/x"), grpc.StatusCode.INVALID_ARGUMENT, "out: "),
        (
            pb.ModerateDatasetRequest(
                content=b"{}", policy=pb.ModerationPolicy(thresholds={"violence/gore": 0.1})
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            'policy.thresholds["violence/gore"]: unknown category',
        ),
        (
            pb.ModerateDatasetRequest(content=b"{}", policy=pb.ModerationPolicy(thresholds={"sexual": -1})),
            grpc.StatusCode.INVALID_ARGUMENT,
            'policy.thresholds["sexual"]: a threshold must be between 0 and 1',
        ),
        (
            pb.ModerateDatasetRequest(
                content=b"{}", policy=pb.ModerationPolicy(roles=[common_pb2.CHAT_ROLE_UNSPECIFIED])
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "policy.roles[0]",
        ),
        (
            pb.ModerateDatasetRequest(content=b"{}", policy=pb.ModerationPolicy(flagged_share_limit=1.5)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "policy.flagged_share_limit",
        ),
        (
            pb.ModerateDatasetRequest(content=b"{}", backend=pb.MODERATION_BACKEND_OPENAI),
            grpc.StatusCode.FAILED_PRECONDITION,
            "OPENAI_API_KEY",
        ),
    ],
)
async def test_bad_dataset_requests_fail_before_any_work(
    service: tuple[RunningService, Path],
    request_: pb.ModerateDatasetRequest,
    code: grpc.StatusCode,
    text: str,
) -> None:
    srv, home = service
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [event async for event in stub(srv).ModerateDataset(request_)]
    assert caught.value.code() == code and text in caught.value.details()
    assert not (home / "datasets" / "upload-moderated").exists(), "nothing was written"


async def test_a_foreign_output_directory_is_refused(service: tuple[RunningService, Path]) -> None:
    srv, home = service
    mine = home / "datasets" / "mine"
    mine.mkdir(parents=True)
    (mine / "keep.txt").write_text("do not touch")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [
            e
            async for e in stub(srv).ModerateDataset(
                pb.ModerateDatasetRequest(content=line("ok"), out="mine")
            )
        ]
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (mine / "keep.txt").read_text() == "do not touch"


async def test_a_generated_persona_dataset_is_not_flagged(service: tuple[RunningService, Path]) -> None:
    """Satire is not hate: a whole dataset generated from a shipped persona pack passes the default policy.

    The babis pack (Czech political satire) when it ships complete, else the English puffington pack.
    """
    srv, home = service
    usable = [entry.name for entry in list_packs(None) if entry.pack is not None]
    pack = load_pack("babis" if "babis" in usable else "puffington")
    out = home / "datasets" / "persona"
    await DatasetBuilder(DatasetSpec(pack=pack, count=600, seed=3, out_dir=out, heldout_count=0)).run()
    request = pb.ModerateDatasetRequest(path="datasets/persona/all.jsonl", out="persona-moderated")
    summary = [e async for e in stub(srv).ModerateDataset(request)][-1].summary
    assert (
        summary.line_count == 600
        and summary.kept_count + summary.removed_count + summary.quarantined_count == 600
    )
    assert summary.flagged_count == 0, json.loads(Path(summary.report_json_path).read_text())[
        "worst_examples"
    ]
    assert summary.input_preflight.verdict == pb.PREFLIGHT_VERDICT_PASS
