"""Training on OpenAI, through our gRPC, against a local HTTP server that implements OpenAI's
documented fine-tuning endpoints: ``POST /v1/files`` (multipart, purpose=fine-tune),
``POST /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs/{id}``, ``GET .../{id}/events`` and
``POST .../{id}/cancel``, with the documented object shapes and statuses."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from loopback_http import serve
from talklike.common.testing import running_service
from talklike.training.servicer import create_service
from talklike.training.settings import TrainingSettings
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc

PROGRESSION = ["validating_files", "queued", "running", "running", "succeeded"]


class FakeOpenAI:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.uploads: list[str] = []
        self.failed_once = False
        self.cancelled: list[str] = []
        #: The bodies of ``POST /v1/fine_tuning/jobs`` as sent.
        self.create_bodies: list[dict[str, Any]] = []

    def job_object(self, job_id: str) -> dict[str, Any]:
        return self.jobs[job_id]

    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        assert form["purpose"] == "fine-tune"
        content = form["file"].file.read().decode()  # type: ignore[union-attr]
        self.uploads.append(content)
        file_id = f"file-{len(self.uploads)}"
        return web.json_response(
            {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": 1,
                "filename": "train.jsonl",
                "purpose": "fine-tune",
                "status": "processed",
            }
        )

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.create_bodies.append(body)
        job_id = f"ftjob-{len(self.jobs) + 1}"
        sent = body.get("method", {}).get("supervised", {}).get("hyperparameters", {})
        # OpenAI answers with its picks where "auto" was sent.
        chosen = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8}
        chosen.update({k: v for k, v in sent.items() if v != "auto"})
        self.jobs[job_id] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": body["model"],
            "created_at": 1,
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-1",
            "result_files": [],
            "status": "validating_files",
            "validation_file": body.get("validation_file"),
            "training_file": body["training_file"],
            "hyperparameters": chosen,
            "method": {"type": "supervised", "supervised": {"hyperparameters": chosen}},
            "trained_tokens": None,
            "seed": 0,
            "error": None,
        }
        self.polls[job_id] = 0
        return web.json_response(self.jobs[job_id])

    async def retrieve(self, request: web.Request) -> web.Response:
        if not self.failed_once:
            self.failed_once = True
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
        job = self.jobs[request.match_info["job_id"]]
        if job["status"] not in ("cancelled",):
            self.polls[job["id"]] += 1
            job["status"] = PROGRESSION[min(self.polls[job["id"]], len(PROGRESSION) - 1)]
            if job["status"] == "succeeded":
                job["fine_tuned_model"] = f"ft:{job['model']}:talklike::{job['id']}"
                job["trained_tokens"] = 1234
        return web.json_response(job)

    async def events(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        polls = self.polls[job_id]
        data = [
            {
                "id": f"ftevent-{job_id}-{i}",
                "object": "fine_tuning.job.event",
                "created_at": i,
                "level": "info",
                "message": f"Step {i}/3: training loss={1.5 - i * 0.3:.2f}",
                "type": "metrics",
                "data": {"step": i, "total_steps": 3, "train_loss": 1.5 - i * 0.3},
            }
            for i in range(1, min(polls, 3) + 1)
        ]
        return web.json_response({"object": "list", "data": list(reversed(data)), "has_more": False})

    async def cancel(self, request: web.Request) -> web.Response:
        job = self.jobs[request.match_info["job_id"]]
        job["status"] = "cancelled"
        self.cancelled.append(job["id"])
        return web.json_response(job)


@pytest.fixture
async def openai_server() -> AsyncIterator[tuple[str, FakeOpenAI]]:
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/files", fake.upload)
    app.router.add_post("/v1/fine_tuning/jobs", fake.create)
    app.router.add_get("/v1/fine_tuning/jobs/{job_id}", fake.retrieve)
    app.router.add_get("/v1/fine_tuning/jobs/{job_id}/events", fake.events)
    app.router.add_post("/v1/fine_tuning/jobs/{job_id}/cancel", fake.cancel)
    async with serve(app) as base_url:
        yield base_url, fake


def settings_for(home: Path, base_url: str, openai_poll_interval_ms: int = 20) -> TrainingSettings:
    return TrainingSettings(
        home=home,
        port=0,
        metrics_port=0,
        openai_base_url=base_url,
        openai_poll_interval_ms=openai_poll_interval_ms,
        poll_interval_ms=20,
        notify_inference=False,
    )


def request_for(adapter: str) -> pb.CreateJobRequest:
    return pb.CreateJobRequest(
        dataset_path="datasets/persona/train.jsonl",
        backend=pb.TRAINING_BACKEND_OPENAI,
        base_model="gpt-4o-mini-2024-07-18",
        adapter_name=adapter,
        hyperparameters=pb.Hyperparameters(epochs=2, learning_rate_multiplier=0.5),
    )


async def wait_state(stub: pb_grpc.TrainingServiceStub, job_id: str, states: set[int]) -> pb.Job:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        if job.state in states:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} did not reach {states}")


async def test_openai_job_uploads_polls_mirrors_and_records_the_model(
    persona_home: Path, openai_server: tuple[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, fake = openai_server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = settings_for(persona_home, base_url)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        job = (await stub.CreateJob(request_for("babis-openai"))).job
        done = await wait_state(stub, job.id, {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED})
        events = [e async for e in stub.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id))]
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error_message
    assert done.fine_tuned_model == "ft:gpt-4o-mini-2024-07-18:talklike::ftjob-1"
    assert len(fake.uploads) == 2  # train + val
    body = fake.create_bodies[0]
    assert "hyperparameters" not in body  # the deprecated top-level field is not sent
    assert body["method"] == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5}
        },
    }
    assert any("n_epochs=2, batch_size=1, learning_rate_multiplier=0.5" in e.message for e in events)
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3]  # mirrored once each
    assert fake.failed_once  # the server answered one poll with 503 and the job still succeeded
    manifest = json.loads((persona_home / "adapters" / "babis-openai" / "adapter_manifest.json").read_text())
    assert manifest["fine_tuned_model"] == done.fine_tuned_model


async def test_cancel_propagates_and_a_missing_key_fails_clearly(
    persona_home: Path, openai_server: tuple[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, fake = openai_server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = settings_for(persona_home, base_url, openai_poll_interval_ms=300)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        job = (await stub.CreateJob(request_for("to-cancel"))).job
        await wait_state(stub, job.id, {pb.JOB_STATE_RUNNING})
        while not fake.jobs:
            await asyncio.sleep(0.02)
        await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
        cancelled = await wait_state(
            stub, job.id, {pb.JOB_STATE_CANCELLED, pb.JOB_STATE_FAILED, pb.JOB_STATE_SUCCEEDED}
        )
        assert cancelled.state == pb.JOB_STATE_CANCELLED and fake.cancelled == ["ftjob-1"]

        monkeypatch.delenv("OPENAI_API_KEY")
        job = (await stub.CreateJob(request_for("no-key"))).job
        failed = await wait_state(stub, job.id, {pb.JOB_STATE_FAILED})
        assert failed.error_code == "missing_api_key" and "OPENAI_API_KEY" in failed.error_message
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))


async def test_unset_hyperparameters_go_as_auto_and_unusable_ones_are_refused(
    persona_home: Path, openai_server: tuple[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, fake = openai_server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = settings_for(persona_home, base_url)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        auto = request_for("auto")
        auto.hyperparameters.Clear()
        job = (await stub.CreateJob(auto)).job
        assert (job.hyperparameters.epochs, job.hyperparameters.lora_r) == (0, 0)  # 0 = auto / not used
        done = await wait_state(stub, job.id, {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED})
        assert done.state == pb.JOB_STATE_SUCCEEDED, done.error_message
        sent = fake.create_bodies[0]["method"]["supervised"]["hyperparameters"]
        assert sent == {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}

        refused = {
            "hyperparameters.lora_r": {"lora_r": 8},
            "hyperparameters.learning_rate": {"learning_rate": 1e-4},
            "hyperparameters.max_steps": {"max_steps": 10},
        }
        for field, values in refused.items():
            request = request_for("refused")
            request.hyperparameters.CopyFrom(pb.Hyperparameters(**values))  # type: ignore[arg-type]
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.CreateJob(request)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (error.value.details() or "").startswith(f"{field}: the openai backend cannot use it")
        merged = request_for("refused")
        merged.export_merged = True
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CreateJob(merged)
        assert (error.value.details() or "").startswith("export_merged: the openai backend cannot use it")

        peft = request_for("peft")
        peft.backend = pb.TRAINING_BACKEND_PEFT
        peft.base_model = "tiny"
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CreateJob(peft)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.value.details() or "").startswith(
            "hyperparameters.learning_rate_multiplier: only the openai"
        )
