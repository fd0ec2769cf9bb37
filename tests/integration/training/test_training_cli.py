"""``talklike train`` and ``talklike jobs list|show|cancel|follow`` as a person runs them, against a real
training service on loopback (its worker a real subprocess training the tiny model)."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import Result
from talklike.cli.main import app
from talklike.common.testing import RunningService, running_service
from talklike.training.servicer import create_service
from talklike.training.settings import TrainingSettings
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # each job starts a worker process that imports torch

DATASET = "datasets/persona/train.jsonl"


@pytest.fixture
async def service(persona_home: Path) -> AsyncIterator[RunningService]:
    settings = TrainingSettings(
        home=persona_home,
        port=0,
        metrics_port=0,
        poll_interval_ms=50,
        notify_inference=False,
        use_disk_agent=False,
    )
    async with running_service(create_service(settings), settings) as srv:
        yield srv


def env_for(srv: RunningService) -> dict[str, str]:
    return {
        "TALKLIKE_HOME": str(srv.settings.home),
        "TALKLIKE_TRAINING_ADDRESS": srv.address,
        "COLUMNS": "200",
        "TERM": "dumb",
    }


async def talklike(srv: RunningService, *args: str) -> Result:
    # The CLI's gRPC calls are blocking; run them off the loop that serves them.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env_for(srv))


async def test_train_follows_a_job_to_its_adapter(service: RunningService, persona_home: Path) -> None:
    result = await talklike(
        service,
        "train",
        DATASET,
        "--backend",
        "peft",
        "--base-model",
        "tiny",
        "--adapter",
        "cli",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--learning-rate",
        "0.003",
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"created job-\w+ \(adapter cli\)", result.stdout)
    assert "succeeded: adapters/cli" in result.stdout
    assert len(re.findall(r"eval loss [\d.]+ \(perplexity [\d.]+\) at step", result.output)) == 3
    assert (persona_home / "adapters" / "cli" / "adapter_manifest.json").exists()

    listed = await talklike(service, "jobs", "list")
    assert listed.exit_code == 0 and "succeeded" in listed.stdout and "6/6" in listed.stdout


async def test_cancel_a_running_job_then_show_list_and_follow_it(service: RunningService) -> None:
    created = await talklike(
        service, "train", DATASET, "--base-model", "tiny", "--max-steps", "2000", "--no-follow"
    )
    assert created.exit_code == 0, created.output
    found = re.search(r"created (job-\w+)", created.stdout)
    assert found
    job_id = found.group(1)
    stub = pb_grpc.TrainingServiceStub(service.channel())
    deadline = time.monotonic() + 180
    while (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job.step < 2:
        assert time.monotonic() < deadline, "the job made no progress"
        await asyncio.sleep(0.1)

    cancel = await talklike(service, "jobs", "cancel", job_id)
    assert cancel.exit_code == 0 and f"{job_id}: running (stopping at the next step)" in cancel.stdout
    follow = await talklike(service, "jobs", "follow", job_id)
    assert follow.exit_code == 0, follow.output
    assert f"job {job_id} is cancelled" in follow.stdout and "cancellation requested" in follow.output
    job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
    assert job.state == pb.JOB_STATE_CANCELLED and 2 <= job.step < 100
    await asyncio.sleep(0.5)  # the worker is gone: no step after the cancel
    assert (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job.step == job.step

    show = await talklike(service, "jobs", "show", job_id)
    assert show.exit_code == 0 and "cancelled" in show.stdout and DATASET in show.stdout
    listed = await talklike(service, "jobs", "list")
    assert job_id in listed.stdout and "cancelled" in listed.stdout

    again = await talklike(service, "jobs", "cancel", job_id)
    assert (
        again.exit_code == 1
        and "already cancelled" in again.output
        and "only queued or running" in again.output
    )
    unknown = await talklike(service, "jobs", "show", "job-nope")
    assert unknown.exit_code == 1 and "job-nope" in unknown.output and "Traceback" not in unknown.output
    bad = await talklike(service, "train", DATASET, "--backend", "gpu")
    assert bad.exit_code == 1 and "unknown backend 'gpu'" in bad.output


async def test_train_explains_and_checks_device_precision_quantization(service: RunningService) -> None:
    """No job runs here: the help, a bad choice, and 4-bit where bitsandbytes is missing."""
    helped = await talklike(service, "train", "--help")
    for words in (
        "--device",
        "--precision",
        "--quantize",
        "--gpus",
        "--gradient-checkpointing",
        "TALKLIKE_TRAINING_LAUNCHER",
    ):
        assert words in helped.output, words
    bad = await talklike(service, "train", DATASET, "--base-model", "tiny", "--precision", "int8")
    assert bad.exit_code == 1 and "unknown --precision 'int8'" in bad.output
    cpu_4bit = await talklike(
        service, "train", DATASET, "--base-model", "tiny", "--device", "cpu", "--quantize", "4bit"
    )
    assert (
        cpu_4bit.exit_code == 1 and "compute.quantization: 4-bit quantization needs CUDA" in cpu_4bit.output
    )
    if importlib.util.find_spec("bitsandbytes") is None:
        missing = await talklike(service, "train", DATASET, "--base-model", "tiny", "--quantize", "4bit")
        assert missing.exit_code == 1 and "bitsandbytes" in missing.output
