"""Training jobs through real gRPC on loopback: a tiny LoRA job end to end, errors, cancel, restart."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from talklike.common.client import health_status_at
from talklike.common.testing import running_service
from talklike.training.servicer import create_service
from talklike.training.settings import TrainingSettings
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc

FINISHED = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


def settings_for(home: Path) -> TrainingSettings:
    return TrainingSettings(
        home=home, port=0, metrics_port=0, poll_interval_ms=50, notify_inference=False, use_disk_agent=False
    )


def job_request(**hp: object) -> pb.CreateJobRequest:
    values = {
        "max_steps": 30,
        "learning_rate": 3e-3,
        "batch_size": 4,
        "eval_interval_steps": 10,
        "lora_r": 8,
        "seed": 1,
    }
    values.update(hp)
    return pb.CreateJobRequest(
        dataset_path="datasets/persona/train.jsonl",
        backend=pb.TRAINING_BACKEND_PEFT,
        base_model="tiny",
        adapter_name="persona",
        hyperparameters=pb.Hyperparameters(**values),  # type: ignore[arg-type]
    )


async def wait_finished(stub: pb_grpc.TrainingServiceStub, job_id: str, timeout_s: float = 180) -> pb.Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        if job.state in FINISHED:
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


@pytest.mark.slow
async def test_a_tiny_lora_job_succeeds_and_streams_every_step(persona_home: Path) -> None:
    settings = settings_for(persona_home)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        job = (await stub.CreateJob(job_request())).job
        assert (
            job.state == pb.JOB_STATE_VALIDATING_FILES
            and job.validation_dataset_path == "datasets/persona/val.jsonl"
        )
        events = [e async for e in stub.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id))]
        final = await wait_finished(stub, job.id)
        late = [e async for e in stub.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id))]

    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error_message
    states = [pb.JobState.Name(e.state) for e in events if e.kind == "state"]
    assert states == [
        "JOB_STATE_VALIDATING_FILES",
        "JOB_STATE_QUEUED",
        "JOB_STATE_RUNNING",
        "JOB_STATE_SUCCEEDED",
    ]
    assert [e.step for e in events if e.kind == "step"] == list(range(1, 31))
    evals = [e.eval_loss for e in events if e.kind == "eval"]
    assert len(evals) == 4  # before training, then at steps 10, 20, 30
    assert evals == sorted(evals, reverse=True) and evals[-1] < evals[0] * 0.85
    assert all(e.tokens_per_second > 0 for e in events if e.kind == "step")
    assert [e.sequence for e in late] == [e.sequence for e in events]  # a late subscriber gets the history

    adapter = persona_home / "adapters" / "persona"
    manifest = json.loads((adapter / "adapter_manifest.json").read_text())
    assert (adapter / "adapter_model.safetensors").exists() and final.adapter_path == "adapters/persona"
    assert manifest["base_model"]["source"] == "tiny" and len(manifest["base_model"]["sha256"]) == 64
    assert len(manifest["dataset"]["sha256"]) == 64 and manifest["trained_tokens"] > 0
    assert manifest["metrics"]["final_eval_loss"] < manifest["metrics"]["initial_eval_loss"]
    assert not (persona_home / "jobs" / final.id / "checkpoint").exists()


async def test_bad_requests_are_refused_with_the_field(persona_home: Path) -> None:
    settings = settings_for(persona_home)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        cases = [
            (job_request(lora_r=0), None),  # 0 means the default: accepted
            (
                pb.CreateJobRequest(
                    dataset_path="../../etc/passwd", backend=pb.TRAINING_BACKEND_PEFT, base_model="tiny"
                ),
                "dataset_path",
            ),
            (
                pb.CreateJobRequest(
                    dataset_path="datasets/nope.jsonl", backend=pb.TRAINING_BACKEND_PEFT, base_model="tiny"
                ),
                "dataset_path",
            ),
            (pb.CreateJobRequest(dataset_path="datasets/persona/train.jsonl", base_model="tiny"), "backend"),
            (job_request(learning_rate=-1), "hyperparameters.learning_rate"),
            (job_request(lora_r=300), "hyperparameters.lora_r"),
        ]
        for request, field in cases:
            if field is None:
                await stub.CreateJob(request)
                continue
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.CreateJob(request)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (
                info.value.details() or ""
            ), field
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetJob(pb.GetJobRequest(job_id="job-nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND

        bad_module = (await stub.CreateJob(job_request(lora_target_modules=["attention_blob"]))).job
        failed = await wait_finished(stub, bad_module.id, 120)
        assert failed.state == pb.JOB_STATE_FAILED and failed.error_code == "unknown_target_module"
        assert "q_proj" in failed.error_message and "attention_blob" in failed.error_message
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CancelJob(pb.CancelJobRequest(job_id=failed.id))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def _has_cuda() -> bool:
    torch = pytest.importorskip("torch")
    return bool(torch.cuda.is_available())


async def test_compute_options_are_checked_and_a_missing_gpu_fails_the_job(persona_home: Path) -> None:
    """Contradictions are INVALID_ARGUMENT, 4-bit without bitsandbytes FAILED_PRECONDITION naming it,
    and a CUDA job on a machine without a GPU fails before any weight loads."""
    settings = settings_for(persona_home)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        job = (await stub.CreateJob(job_request())).job
        assert job.compute == pb.ComputeOptions(device=pb.COMPUTE_DEVICE_AUTO, gpu_count=1)
        await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))

        cpu_4bit = job_request()
        cpu_4bit.compute.CopyFrom(
            pb.ComputeOptions(device=pb.COMPUTE_DEVICE_CPU, quantization=pb.COMPUTE_QUANTIZATION_NF4)
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateJob(cpu_4bit)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith("compute.quantization: 4-bit quantization needs CUDA")

        if importlib.util.find_spec("bitsandbytes") is None:
            qlora = job_request()
            qlora.compute.quantization = pb.COMPUTE_QUANTIZATION_NF4
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.CreateJob(qlora)
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "bitsandbytes" in (info.value.details() or "")

        if not _has_cuda():
            on_gpu = job_request(max_steps=2)
            on_gpu.compute.device = pb.COMPUTE_DEVICE_CUDA
            job = (await stub.CreateJob(on_gpu)).job
            failed = await wait_finished(stub, job.id, 120)
            assert failed.state == pb.JOB_STATE_FAILED and failed.error_code == "failed_precondition"
            assert "sees no CUDA device" in failed.error_message


async def test_examples_without_assistant_tokens_fail_the_job(persona_home: Path) -> None:
    # Valid lines (a line without an answer is refused earlier, numbered), but every answer is cut
    # off by max_sequence_tokens: the computed mask is empty and must fail the job.
    bad = persona_home / "datasets" / "persona" / "no_answers.jsonl"
    long_question = {"role": "user", "content": "Otázka o inflaci a daních? " * 40}
    bad.write_text(json.dumps({"messages": [long_question, {"role": "assistant", "content": "Ano."}]}) + "\n")
    settings = settings_for(persona_home)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        request = job_request(max_sequence_tokens=16)
        request.dataset_path = "datasets/persona/no_answers.jsonl"
        job = (await stub.CreateJob(request)).job
        failed = await wait_finished(stub, job.id, 120)
    assert failed.state == pb.JOB_STATE_FAILED and failed.error_code == "no_assistant_tokens"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


@pytest.mark.slow
def test_a_killed_service_resumes_the_job_from_its_checkpoint(
    persona_home: Path, free_port, request: pytest.FixtureRequest
) -> None:  # type: ignore[no-untyped-def]
    """Kill -9 the service mid-job; a new service finishes the job from the checkpoint, not from step 0."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKLIKE_")}
    env.update(
        TALKLIKE_HOME=str(persona_home),
        TALKLIKE_TRAINING_PORT=str(port),
        TALKLIKE_TRAINING_METRICS_PORT="0",
        TALKLIKE_TRAINING_NOTIFY_INFERENCE="false",
        TALKLIKE_TRAINING_USE_DISK_AGENT="false",
        TALKLIKE_LOG_FORMAT="text",
    )
    command = [sys.executable, "-m", "talklike.cli.main", "serve", "training"]
    address = f"127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        request.addfinalizer(lambda: stop(process))  # never left running, whatever fails below
        deadline = time.monotonic() + 180
        while health_status_at(address, "talklike.v1.TrainingService") != "SERVING":
            assert process.poll() is None and time.monotonic() < deadline, (
                "the training service did not start"
            )
            time.sleep(0.2)
        return process

    first = start()
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.TrainingServiceStub(channel)
        job = stub.CreateJob(job_request(max_steps=100, eval_interval_steps=20)).job
        deadline = time.monotonic() + 240
        while stub.GetJob(pb.GetJobRequest(job_id=job.id)).job.step < 45:
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = start()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.TrainingServiceStub(channel)
            deadline = time.monotonic() + 300
            while (current := stub.GetJob(pb.GetJobRequest(job_id=job.id)).job).state not in FINISHED:
                assert time.monotonic() < deadline, "the resumed job did not finish"
                time.sleep(0.2)
            events = list(stub.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id)))
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert current.state == pb.JOB_STATE_SUCCEEDED, current.error_message
    resumed = [e for e in events if "resumed from the checkpoint" in e.message]
    # Killed at step >= 45, so the last checkpoint (every 20 steps) is 40 or later; how much later
    # depends on how fast the machine is: the proof is that training continues right after it.
    assert len(resumed) == 1 and resumed[0].step >= 40 and resumed[0].step % 20 == 0
    after = [e.step for e in events[events.index(resumed[0]) :] if e.kind == "step"]
    assert after and after[0] == resumed[0].step + 1
    steps = [e.step for e in events if e.kind == "step"]
    assert steps[-1] == 100 and steps.count(100) == 1

    # The manifest describes the whole job, not only the part after the restart: every token of
    # the 100 planned batches, counted independently from the data and the same step plan.
    from talklike.training.data import encode_all, read_examples
    from talklike.training.peft_trainer import step_plan
    from transformers import AutoTokenizer

    manifest = json.loads((persona_home / "adapters" / "persona" / "adapter_manifest.json").read_text())
    (model_dir,) = (persona_home / "models").glob("tiny-*")
    train = encode_all(
        AutoTokenizer.from_pretrained(model_dir),
        read_examples(persona_home / "datasets" / "persona" / "train.jsonl"),
        256,
        "training",
    )
    plan = step_plan(len(train), 4, 1, 100, 1)
    assert manifest["trained_tokens"] == sum(len(train[i].input_ids) for batch in plan for i in batch)


@pytest.mark.slow
async def test_merged_export_is_a_loadable_model(persona_home: Path) -> None:
    settings = settings_for(persona_home)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        request = job_request(max_steps=5)
        request.export_merged = True
        job = (await stub.CreateJob(request)).job
        done = await wait_finished(stub, job.id, 120)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error_message
    merged = persona_home / "adapters" / "persona" / "merged"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert AutoTokenizer.from_pretrained(merged).chat_template and not hasattr(model, "peft_config")


@pytest.mark.slow
async def test_no_disk_room_fails_the_job_before_any_work(
    persona_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real disk agent on a simulated full volume refuses; the job fails at validating_files, nothing is written."""
    from talklike.disk_agent.servicer import create_service as disk_service
    from talklike.disk_agent.settings import DiskAgentSettings

    disk_settings = DiskAgentSettings(home=persona_home, port=0, metrics_port=0, capacity_bytes=1024)
    async with running_service(disk_service(disk_settings), disk_settings) as disk:
        monkeypatch.setenv("TALKLIKE_DISK_AGENT_ADDRESS", disk.address)
        settings = settings_for(persona_home).model_copy(update={"use_disk_agent": True})
        async with running_service(create_service(settings), settings) as srv:
            stub = pb_grpc.TrainingServiceStub(srv.channel())
            job = (await stub.CreateJob(job_request())).job
            failed = await wait_finished(stub, job.id, 120)
            models = persona_home / "models"
            assert not models.exists() or not [p for p in models.iterdir() if not p.name.startswith(".")]

            # With the base model already cached, the room for training itself is still asked for.
            from talklike.models import resolve

            await asyncio.to_thread(resolve, "tiny", models)
            second = (await stub.CreateJob(job_request())).job
            refused = await wait_finished(stub, second.id, 120)
    assert failed.state == pb.JOB_STATE_FAILED and failed.error_code == "insufficient_disk"
    assert "the base model" in failed.error_message and "short by" in failed.error_message
    assert refused.state == pb.JOB_STATE_FAILED and refused.error_code == "insufficient_disk"
    assert "for training" in refused.error_message
    assert not (persona_home / "adapters").exists()
    assert not (persona_home / "jobs" / job.id).exists() and not (persona_home / "jobs" / second.id).exists()


@pytest.mark.slow
async def test_a_finished_adapter_is_loaded_into_the_running_inference_service(
    persona_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever sees "succeeded" can chat with the adapter at once: the worker loaded it first."""
    from talklike.inference.servicer import create_service as inference_service
    from talklike.inference.settings import InferenceSettings
    from talklike.v1 import common_pb2
    from talklike.v1 import inference_pb2 as ipb
    from talklike.v1 import inference_pb2_grpc as ipb_grpc

    inference_settings = InferenceSettings(
        home=persona_home, base_model="tiny", port=0, metrics_port=0, http_port=0
    )
    async with running_service(inference_service(inference_settings), inference_settings) as inference:
        monkeypatch.setenv("TALKLIKE_INFERENCE_ADDRESS", inference.address)  # the worker inherits it
        settings = settings_for(persona_home).model_copy(update={"notify_inference": True})
        async with running_service(create_service(settings), settings) as srv:
            stub = pb_grpc.TrainingServiceStub(srv.channel())
            job = (await stub.CreateJob(job_request(max_steps=3))).job
            done = await wait_finished(stub, job.id, 240)
            events = [e async for e in stub.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id))]
        assert done.state == pb.JOB_STATE_SUCCEEDED, done.error_message
        loaded = [i for i, e in enumerate(events) if "loaded into the inference service" in e.message]
        succeeded = [i for i, e in enumerate(events) if e.state == pb.JOB_STATE_SUCCEEDED]
        assert loaded and loaded[0] < succeeded[0]

        istub = ipb_grpc.InferenceServiceStub(inference.channel())
        models = await istub.ListModels(ipb.ListModelsRequest())
        assert [a.name for a in models.adapters] == ["persona"]
        assert json.loads(models.adapters[0].manifest_json)["job_id"] == job.id
        reply = await istub.Generate(
            ipb.GenerateRequest(
                chat=ipb.Conversation(
                    messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content="Brusel?")]
                ),
                adapter="persona",
                sampling=ipb.SamplingParams(max_new_tokens=4),
            )
        )
        assert reply.usage.completion_tokens > 0
