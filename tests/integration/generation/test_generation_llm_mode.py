"""LLM question mode against a real OpenAI-compatible HTTP server on loopback.

The server below is written for this test (aiohttp, 127.0.0.1, a free port): it implements
``POST /v1/chat/completions`` the way OpenAI answers it, checks the bearer key, and can be
told to fail — a 500 on the first request (to exercise retries with backoff), a reply that
is not JSON for one batch (malformed: recorded in ``invalid/`` and asked again), an empty
question for one answer (that answer falls back to a template question), 401 for a locked
model and 404 for an unknown one. It counts requests, so the response cache is checked by
the fact that a rerun sends none. The generation service runs for real on loopback too.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from loopback_http import api_error, chat_completion, serve_post
from talklike.common.testing import RunningService, running_service
from talklike.generation.servicer import create_service
from talklike.generation.settings import GenerationSettings
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc

KEY_ENV = "TALKLIKE_TEST_LLM_KEY"
KEY = "sekrit-key"
ANSWER_HEAD = re.compile(r"^(\d+)\. topic: (.+?); tone: ", re.MULTILINE)


@dataclass
class FakeOpenAI:
    """State of the loopback server: what it saw and how it should misbehave."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_first_with_500: bool = True
    malformed_batches: set[int] = field(default_factory=lambda: {1})
    empty_item: tuple[int, int] = (2, 0)
    seen_batches: dict[str, int] = field(default_factory=dict)
    malformed_sent: set[int] = field(default_factory=set)

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return api_error(401, "bad key", type="invalid_request_error")
        if body["model"] == "locked":
            return api_error(401, "no access", type="invalid_request_error")
        if body["model"] != "journalist-1":
            return api_error(404, "model not found", code="model_not_found")
        if self.fail_first_with_500 and len(self.requests) == 1:
            return api_error(500, "overloaded")
        user = body["messages"][1]["content"]
        batch = self.seen_batches.setdefault(user, len(self.seen_batches))
        if batch in self.malformed_batches and batch not in self.malformed_sent:
            self.malformed_sent.add(batch)
            return self.reply(body, "Sure! Here are some great questions for you.")
        questions = [
            f"Mr Mayor, what about {topic} (question {n})?" for n, topic in ANSWER_HEAD.findall(user)
        ]
        if batch == self.empty_item[0]:
            questions[self.empty_item[1]] = ""
        return self.reply(body, "```json\n" + json.dumps({"questions": questions}) + "\n```")

    @staticmethod
    def reply(body: dict[str, Any], content: str) -> web.Response:
        return chat_completion(body["model"], content)


@pytest.fixture
async def fake_openai() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    async with serve_post("/v1/chat/completions", fake.completions) as base_url:
        yield fake, base_url


@pytest.fixture
async def service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai: tuple[FakeOpenAI, str]
) -> AsyncIterator[tuple[RunningService, Path]]:
    monkeypatch.setenv(KEY_ENV, KEY)
    home = tmp_path / "home"
    settings = GenerationSettings(
        home=home,
        port=0,
        metrics_port=0,
        llm_base_urls=fake_openai[1],  # the operator allows it: the service's key goes there
        llm_api_key_env=KEY_ENV,
        llm_backoff_s=0.01,
        llm_max_retries=2,
        llm_batch_size=5,
        llm_concurrency=2,
    )
    async with running_service(create_service(settings), settings) as srv:
        yield srv, home


def request(base_url: str, out: str, model: str = "journalist-1") -> pb.GenerateDatasetRequest:
    return pb.GenerateDatasetRequest(
        pack="puffington",
        count=30,
        seed=11,
        out=out,
        heldout_count=5,
        question_mode=pb.QUESTION_MODE_LLM,
        llm=pb.LlmOptions(base_url=base_url, model=model),
    )


async def run(srv: RunningService, req: pb.GenerateDatasetRequest) -> pb.DatasetSummary:
    stub = pb_grpc.GenerationServiceStub(srv.channel())
    events = [event async for event in stub.GenerateDataset(req)]
    assert any(e.HasField("progress") and e.progress.stage == "questions" for e in events)
    return events[-1].summary


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_llm_questions_with_retry_malformed_reply_fallback_and_cache(
    service: tuple[RunningService, Path], fake_openai: tuple[FakeOpenAI, str]
) -> None:
    srv, home = service
    fake, base_url = fake_openai
    summary = await run(srv, request(base_url, "llm1"))
    stats = json.loads(summary.stats_json)
    llm = stats["questions"]["llm"]
    # 30 answers in batches of 5 = 6 batches; +1 retried 500, +1 malformed batch asked again
    assert len(fake.requests) == 8
    assert (llm["requests"], llm["retries"], llm["malformed_replies"], llm["cache_hits"]) == (8, 1, 1, 0)
    assert (summary.llm_question_count, summary.template_question_count) == (29, 1)
    assert llm["fallbacks"] == 1
    assert fake.requests[0]["temperature"] == 0.7 and fake.requests[0]["messages"][0]["role"] == "system"

    examples = jsonl(home / "datasets" / "llm1" / "all.jsonl")
    meta = jsonl(home / "datasets" / "llm1" / "meta.jsonl")
    for example, info in zip(examples, meta, strict=True):
        question = example["messages"][1]["content"]
        if info["question_source"] == "llm":
            assert question.startswith(f"Mr Mayor, what about {info['topic']} (question")
        else:
            assert info["question_source"] == "template-fallback" and info["question_template"]
    invalid = jsonl(home / "datasets" / "llm1" / "invalid" / "llm_replies.jsonl")
    reasons = sorted(r["reason"] for r in invalid)
    assert reasons == ["question 1: empty or not a string", "the reply is not a JSON object"]
    assert all(r["reply"] and r["answers"] for r in invalid)

    # The same request again: every batch comes from the cache, nothing is sent.
    before = len(fake.requests)
    again = await run(srv, request(base_url, "llm2"))
    again_llm = json.loads(again.stats_json)["questions"]["llm"]
    assert len(fake.requests) == before
    assert (again_llm["requests"], again_llm["cache_hits"]) == (0, 6)
    assert (home / "datasets" / "llm2" / "all.jsonl").read_bytes() == (
        home / "datasets" / "llm1" / "all.jsonl"
    ).read_bytes()
    assert list((home / "cache" / "llm").rglob("*.json"))


async def test_refused_key_and_unknown_model_fail_at_once(
    service: tuple[RunningService, Path], fake_openai: tuple[FakeOpenAI, str]
) -> None:
    srv, _home = service
    fake, base_url = fake_openai
    fake.fail_first_with_500 = False
    with pytest.raises(grpc.aio.AioRpcError) as locked:
        await run(srv, request(base_url, "x1", model="locked"))
    assert locked.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "refused the API key" in (locked.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await run(srv, request(base_url, "x2", model="no-such-model"))
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (unknown.value.details() or "").startswith("llm.model:")
    assert len(fake.requests) <= 2 * 2, "4xx errors are not retried (at most the concurrent first requests)"


async def test_an_endpoint_that_is_down_is_unavailable_after_the_retries(
    service: tuple[RunningService, Path], free_port: Callable[[], int]
) -> None:
    srv, _home = service
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await run(srv, request(f"http://127.0.0.1:{free_port()}/v1", "down"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "failed 3 times" in (info.value.details() or "")
