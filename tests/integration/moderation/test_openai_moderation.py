"""The OpenAI backend against a local HTTP server implementing OpenAI's documented ``/v1/moderations``.

The server below is written for this test (aiohttp on 127.0.0.1, a free port). It implements
``POST /v1/moderations`` as OpenAI documents it: a JSON body with ``model`` and ``input`` (a
string or an array of strings), a bearer key, and a reply ``{"id", "model", "results": [...]}``
with one result per input — ``flagged``, ``categories``, ``category_scores`` and
``category_applied_input_types`` over the 13 omni-moderation categories. It refuses more than
32 inputs per request (so batching is checked), answers 401 for a wrong key and 404 for an
unknown model, and can be told to fail first (a 429 with ``Retry-After``, then a 500) or to
answer 503 forever. A text scores what its tags say: ``[hate=0.9]`` → hate 0.9. The
moderation service runs for real on loopback too, so the calls go through gRPC.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from loopback_http import serve_post
from talklike.common.testing import RunningService, running_service
from talklike.moderation.categories import CATEGORIES
from talklike.moderation.servicer import create_service
from talklike.moderation.settings import ModerationSettings
from talklike.v1 import moderation_pb2 as pb
from talklike.v1 import moderation_pb2_grpc as pb_grpc

KEY_ENV = "TALKLIKE_TEST_OPENAI_KEY"
KEY = "sk-test-moderation"
MAX_INPUTS = 32
TAG = re.compile(r"\[([a-z/-]+)=([0-9.]+)\]")


@dataclass
class ModerationServer:
    """What the loopback server saw, and how it should misbehave."""

    failures: list[int] = field(default_factory=list)
    always: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    started: list[float] = field(default_factory=list)

    async def moderations(self, request: web.Request) -> web.Response:
        self.started.append(time.monotonic())
        body = await request.json()
        self.requests.append(body)
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return self.error(401, "Incorrect API key provided.", "invalid_api_key")
        if self.always:
            return self.error(self.always, "The server is overloaded.", None)
        if self.failures:
            status = self.failures.pop(0)
            headers = {"Retry-After": "0"} if status == 429 else {}
            return self.error(
                status, "Rate limit reached." if status == 429 else "Server error.", None, headers
            )
        if body.get("model") != "omni-moderation-latest":
            return self.error(404, f"The model {body.get('model')!r} does not exist", "model_not_found")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if len(inputs) > MAX_INPUTS:
            return self.error(400, f"At most {MAX_INPUTS} inputs per request.", None)
        return web.json_response(
            {
                "id": f"modr-{len(self.requests)}",
                "model": body["model"],
                "results": [self.result(t) for t in inputs],
            }
        )

    @staticmethod
    def result(text: str) -> dict[str, Any]:
        scores = dict.fromkeys(CATEGORIES, 0.0001)
        for name, value in TAG.findall(text):
            scores[name] = float(value)
        flags = {name: score >= 0.5 for name, score in scores.items()}
        return {
            "flagged": any(flags.values()),
            "categories": flags,
            "category_scores": scores,
            "category_applied_input_types": {name: ["text"] for name in CATEGORIES},
        }

    @staticmethod
    def error(
        status: int, message: str, code: str | None, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def openai_server() -> AsyncIterator[tuple[ModerationServer, str]]:
    fake = ModerationServer()
    async with serve_post("/v1/moderations", fake.moderations) as base_url:
        yield fake, base_url


async def start(tmp_path: Path, base_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "port": 0,
        "metrics_port": 0,
        "openai_base_url": base_url,
        "openai_api_key_env": KEY_ENV,
        "openai_backoff_s": 0.01,
        "openai_max_retries": 3,
        "openai_requests_per_minute": 60_000,
    }
    settings = ModerationSettings(**{**values, **overrides})
    return running_service(create_service(settings), settings)


def moderate(srv: RunningService, texts: list[str]) -> Any:
    stub = pb_grpc.ModerationServiceStub(srv.channel())
    return stub.Moderate(pb.ModerateRequest(texts=texts, backend=pb.MODERATION_BACKEND_OPENAI))


async def test_batches_retries_and_the_mapping_of_results(
    openai_server: tuple[ModerationServer, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base_url = openai_server
    monkeypatch.setenv(KEY_ENV, KEY)
    fake.failures = [429, 500]
    texts = [f"text {i} [hate=0.{i % 10}]" for i in range(70)]
    # One request in flight: the two failures land on the first batch, whatever the scheduler does.
    async with await start(tmp_path, base_url, openai_concurrency=1) as srv:
        reply = await moderate(srv, texts)
    assert reply.backend == "openai" and reply.model == "omni-moderation-latest"
    sizes = [len(r["input"]) for r in fake.requests]
    assert sorted(sizes) == [6, 32, 32, 32, 32], "two failed attempts retried, then 32 + 32 + 6"
    assert all(isinstance(r["input"], list) for r in fake.requests), "array input"
    assert [round(r.category_scores["hate"], 1) for r in reply.results] == [(i % 10) / 10 for i in range(70)]
    assert reply.results[9].categories["hate"] and not reply.results[1].categories["hate"]
    assert reply.results[9].policy_violations == ["hate"] and reply.results[2].policy_violations == []
    assert reply.results[0].reasons == [], "OpenAI gives no reasons"


async def test_the_request_rate_limit_spaces_requests(
    openai_server: tuple[ModerationServer, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base_url = openai_server
    monkeypatch.setenv(KEY_ENV, KEY)
    async with await start(tmp_path, base_url, openai_requests_per_minute=400, openai_batch_size=5) as srv:
        await moderate(srv, [f"t{i}" for i in range(20)])
    # 400/min = one start per 0.15 s at the client; arrivals jitter (the first one also connects).
    gaps = [b - a for a, b in zip(fake.started, fake.started[1:], strict=False)]
    assert len(fake.started) == 4 and fake.started[-1] - fake.started[0] >= 0.42 and min(gaps) >= 0.09, gaps


async def test_a_dataset_moderated_with_openai(
    openai_server: tuple[ModerationServer, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base_url = openai_server
    monkeypatch.setenv(KEY_ENV, KEY)
    system = {"role": "system", "content": "You are the mayor."}
    rows = [
        {"messages": [system, {"role": "user", "content": "Q"}, {"role": "assistant", "content": f"A{i}"}]}
        for i in range(40)
    ]
    rows[7]["messages"][2]["content"] = "A7 [violence=0.45]"  # under OpenAI's flag, over the policy's 0.4
    content = "\n".join(json.dumps(r) for r in rows).encode() + b"\nnot json\n"
    async with await start(tmp_path, base_url) as srv:
        stub = pb_grpc.ModerationServiceStub(srv.channel())
        request = pb.ModerateDatasetRequest(
            content=content, file_name="mayor.jsonl", backend=pb.MODERATION_BACKEND_OPENAI
        )
        summary = [e async for e in stub.ModerateDataset(request)][-1].summary
    assert (summary.line_count, summary.kept_count, summary.removed_count, summary.quarantined_count) == (
        41,
        39,
        1,
        1,
    )
    assert summary.backend == "openai" and summary.text_count == 42, "system and user prompts are sent once"
    assert sum(len(r["input"]) for r in fake.requests) == 42
    violence = next(c for c in summary.categories if c.category == "violence")
    assert violence.violation_count == 1 and violence.backend_flagged_count == 0
    report = json.loads(Path(summary.report_json_path).read_text())
    assert report["backend"] == "openai" and report["worst_examples"][0]["line_number"] == 8


@pytest.mark.parametrize(
    ("setup", "code", "text"),
    [
        ({"key": "wrong"}, grpc.StatusCode.FAILED_PRECONDITION, "OPENAI_API_KEY"),
        (
            {"model": "text-moderation-007"},
            grpc.StatusCode.FAILED_PRECONDITION,
            "TALKLIKE_MODERATION_OPENAI_MODEL",
        ),
        ({"always": 503}, grpc.StatusCode.UNAVAILABLE, "failed 4 times"),
        ({"batch": 40}, grpc.StatusCode.INVALID_ARGUMENT, "At most 32 inputs"),
    ],
)
async def test_refusals_fail_with_what_to_change(
    openai_server: tuple[ModerationServer, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, Any],
    code: grpc.StatusCode,
    text: str,
) -> None:
    fake, base_url = openai_server
    monkeypatch.setenv(KEY_ENV, setup.get("key", KEY))
    fake.always = setup.get("always", 0)
    overrides = {
        "openai_model": setup.get("model", "omni-moderation-latest"),
        "openai_batch_size": setup.get("batch", 32),
    }
    async with await start(tmp_path, base_url, **overrides) as srv:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await moderate(srv, [f"t{i}" for i in range(40)])
    assert caught.value.code() == code and text in caught.value.details()
    if setup.get("always"):
        assert len(fake.requests) == 4 * 2, "each of the two batches: one try and three retries"
