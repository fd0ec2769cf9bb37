"""The Kubernetes launcher through our gRPC, against a stand-in Kubernetes API server on loopback.

``FakeKubernetes`` implements only the endpoints the launcher's official ``kubernetes`` client
calls, with the documented object shapes: ``POST/GET /apis/batch/v1/namespaces/{ns}/jobs``
(create, list by ``labelSelector``), ``GET`` and ``DELETE .../jobs/{name}`` (read, delete with
``propagationPolicy``), ``GET /api/v1/namespaces/{ns}/pods`` (list by ``labelSelector``) and
``GET .../pods/{name}/log``. It is no scheduler: a test moves pods along (pending, failed,
evicted, succeeded), and where a test asks for it, it runs the Job's container command as a
local process — the worker, as the kubelet would start it — and ends the pod with its exit code.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from loopback_http import serve
from talklike.common.errors import FailedPrecondition
from talklike.common.testing import running_service
from talklike.models.precision import cpu_multiplies_bf16
from talklike.training.compute import Compute
from talklike.training.kubernetes_launcher import job_manifest
from talklike.training.servicer import create_service
from talklike.training.settings import TrainingSettings
from talklike.training.spec import JobSpec
from talklike.training.store import JobStore
from talklike.v1 import training_pb2 as pb
from talklike.v1 import training_pb2_grpc as pb_grpc

pytest.importorskip("kubernetes")

FINISHED = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}
NAMESPACE = "talklike"
GPU_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def not_found(kind: str, name: str) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": f'{kind} "{name}" not found',
            "reason": "NotFound",
            "code": 404,
        },
        status=404,
    )


def selected(labels: dict[str, str], selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return all(labels.get(k) == v for k, v in wanted.items())


class FakeKubernetes:
    """Jobs and their pods in memory; ``run_workers``: start each pod's command as a local process."""

    def __init__(self, run_workers: bool = False) -> None:
        self.run_workers = run_workers
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str]] = []
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    # -- the API ---------------------------------------------------------------------------
    async def create_job(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.created.append(json.loads(json.dumps(body)))
        name = body["metadata"]["name"]
        body["metadata"].update(uid=f"uid-{len(self.created)}", creationTimestamp=now())
        body["status"] = {"active": 1, "startTime": now()}
        self.jobs[name] = body
        self._new_pod(name)
        return web.json_response(body, status=201)

    async def list_jobs(self, request: web.Request) -> web.Response:
        selector = request.query.get("labelSelector", "")
        items = [j for j in self.jobs.values() if selected(j["metadata"]["labels"], selector)]
        return web.json_response(
            {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items}
        )

    async def read_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["name"])
        return web.json_response(job) if job else not_found("jobs.batch", request.match_info["name"])

    async def delete_job(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.jobs:
            return not_found("jobs.batch", name)
        body = await request.json() if request.can_read_body else {}
        policy = request.query.get("propagationPolicy") or body.get("propagationPolicy", "")
        self.deleted.append((name, policy))
        for pod in [p for p in self.pods.values() if p["metadata"]["labels"]["job-name"] == name]:
            process = self.processes.pop(pod["metadata"]["name"], None)
            if process is not None and process.poll() is None:
                process.terminate()  # the kubelet stops the container
            del self.pods[pod["metadata"]["name"]]
        del self.jobs[name]
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})

    async def list_pods(self, request: web.Request) -> web.Response:
        selector = request.query.get("labelSelector", "")
        items = [p for p in self.pods.values() if selected(p["metadata"]["labels"], selector)]
        return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    async def pod_log(self, request: web.Request) -> web.Response:
        pod = self.pods.get(request.match_info["name"])
        if pod is None:
            return not_found("pods", request.match_info["name"])
        return web.Response(text=pod.get("log", ""), content_type="text/plain")

    def app(self) -> web.Application:
        app = web.Application()
        jobs = "/apis/batch/v1/namespaces/{ns}/jobs"
        app.router.add_post(jobs, self.create_job)
        app.router.add_get(jobs, self.list_jobs)
        app.router.add_get(jobs + "/{name}", self.read_job)
        app.router.add_delete(jobs + "/{name}", self.delete_job)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self.list_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self.pod_log)
        return app

    # -- what a test (or the "kubelet") does to pods ----------------------------------------
    def _new_pod(self, job: str) -> dict[str, Any]:
        template = self.jobs[job]["spec"]["template"]
        attempt = sum(1 for p in self.pods.values() if p["metadata"]["labels"]["job-name"] == job)
        name = f"{job}-{attempt}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": {**template["metadata"]["labels"], "job-name": job},
                "creationTimestamp": now(),
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        self.pods[name] = pod
        if self.run_workers:
            task = asyncio.get_running_loop().create_task(self._run_container(job, pod))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return pod

    async def _run_container(self, job: str, pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        command = [sys.executable if part == "python3" else part for part in container["command"]]
        env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if "value" in e}}
        pod["status"] = {"phase": "Running"}
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.processes[pod["metadata"]["name"]] = process
        output, _ = await asyncio.to_thread(process.communicate)
        pod["log"] = output.decode(errors="replace")
        if job not in self.jobs:
            return  # deleted meanwhile
        if process.returncode == 0:
            self.succeed(job)
        else:
            self.fail_pod(job, reason="", message="", exit_code=process.returncode or 1)

    def current_pod(self, job: str) -> dict[str, Any]:
        return [p for p in self.pods.values() if p["metadata"]["labels"]["job-name"] == job][-1]

    def unschedulable(self, job: str, message: str) -> None:
        self.current_pod(job)["status"] = {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
            ],
        }

    def fail_pod(self, job: str, reason: str, message: str, exit_code: int = 137, log: str = "") -> None:
        """The current pod fails; Kubernetes starts another until backoffLimit, then fails the Job."""
        pod = self.current_pod(job)
        pod["log"] = pod.get("log", "") + log
        terminated = {"exitCode": exit_code, "reason": "Error", "startedAt": now(), "finishedAt": now()}
        pod["status"] = {
            "phase": "Failed",
            **({"reason": reason, "message": message} if reason else {}),
            "containerStatuses": [
                {
                    "name": "worker",
                    "image": "talklike:test",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        status = self.jobs[job]["status"]
        status["failed"] = status.get("failed", 0) + 1
        if status["failed"] > self.jobs[job]["spec"]["backoffLimit"]:
            status.pop("active", None)
            status["conditions"] = [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        else:
            self._new_pod(job)

    def succeed(self, job: str) -> None:
        self.current_pod(job)["status"] = {"phase": "Succeeded"}
        status = self.jobs[job]["status"]
        status.pop("active", None)
        status.update(succeeded=1, conditions=[{"type": "Complete", "status": "True"}])


@pytest.fixture
async def kubernetes_api(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, FakeKubernetes]]:
    fake = FakeKubernetes(run_workers=getattr(request, "param", False))
    async with serve(fake.app()) as base_url:
        yield base_url.removesuffix("/v1"), fake
    for process in fake.processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def settings_for(home: Path, api_url: str) -> TrainingSettings:
    return TrainingSettings(
        home=home,
        port=0,
        metrics_port=0,
        poll_interval_ms=50,
        notify_inference=False,
        use_disk_agent=False,
        launcher="kubernetes",
        kubernetes_api_url=api_url,
        kubernetes_namespace=NAMESPACE,
        kubernetes_image="talklike:test",
        kubernetes_node_selector=GPU_SELECTOR,
        kubernetes_tolerations=[GPU_TOLERATION],
        kubernetes_backoff_limit=1,
        kubernetes_poll_interval_ms=50,
    )


def tiny_job(**compute: Any) -> pb.CreateJobRequest:
    return pb.CreateJobRequest(
        dataset_path="datasets/persona/train.jsonl",
        backend=pb.TRAINING_BACKEND_PEFT,
        base_model="tiny",
        adapter_name="k8s",
        hyperparameters=pb.Hyperparameters(max_steps=6, eval_interval_steps=3, lora_r=4, seed=1),
        compute=pb.ComputeOptions(**compute),
    )


@asynccontextmanager
async def service_with_a_job(
    home: Path, api_url: str, fake: FakeKubernetes, request: pb.CreateJobRequest | None = None
) -> AsyncIterator[tuple[pb_grpc.TrainingServiceStub, pb.Job, str]]:
    """The service with the Kubernetes launcher, one job created, and the name of its Job."""
    settings = settings_for(home, api_url)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        job = (await stub.CreateJob(request or tiny_job())).job
        yield stub, job, await wait_for(lambda: next(iter(fake.jobs), None), "the Job")


async def wait_for(condition: Any, what: str, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await condition() if asyncio.iscoroutinefunction(condition) else condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def finished(stub: pb_grpc.TrainingServiceStub, job_id: str, timeout_s: float = 180) -> pb.Job:
    async def done() -> pb.Job | None:
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        return job if job.state in FINISHED else None

    return await wait_for(done, f"job {job_id} to finish", timeout_s)


async def messages(stub: pb_grpc.TrainingServiceStub, job_id: str) -> list[str]:
    return [e.message async for e in stub.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job_id))]


def validate_strictly(manifest: dict[str, Any], tmp_path: Path) -> None:
    """kubernetes-validate --strict, offline, on the Job as the launcher sent it."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "deploy"))
    from deploy_helpers import tool  # type: ignore[import-not-found]

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kubernetes_api", [True], indirect=True)
async def test_a_job_runs_as_a_kubernetes_job_and_is_followed_to_its_adapter(
    persona_home: Path, kubernetes_api: tuple[str, FakeKubernetes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    api_url, fake = kubernetes_api
    settings = settings_for(persona_home, api_url)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        job = (await stub.CreateJob(tiny_job())).job
        done = await finished(stub, job.id)
        log = await messages(stub, job.id)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error_message
    assert (persona_home / "adapters" / "k8s" / "adapter_model.safetensors").exists()
    assert len(fake.created) == 1
    manifest = fake.created[0]
    assert manifest["metadata"]["labels"]["talklike.dev/training-job"] == job.id
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "talklike:test"
    assert container["command"][:3] == ["python3", "-m", "talklike.training.worker"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1  # device auto asks for a GPU
    assert pod["nodeSelector"] == GPU_SELECTOR and pod["tolerations"] == [GPU_TOLERATION]
    assert {"name": "data", "mountPath": str(persona_home)} in container["volumeMounts"]
    assert pod["volumes"][0] == {"name": "data", "persistentVolumeClaim": {"claimName": "talklike-data"}}
    assert any(m.startswith(f"created the Kubernetes Job talklike-train-{job.id}") for m in log)
    # no GPU on this machine: auto fell back to the CPU, in bf16 where the CPU multiplies it
    precision = "bf16" if cpu_multiplies_bf16() else "fp32"
    assert f"training on cpu in {precision}" in log
    validate_strictly(manifest, tmp_path_factory.mktemp("manifests"))


async def test_evictions_past_the_backoff_limit_fail_the_job_with_the_pods_reason(
    persona_home: Path, kubernetes_api: tuple[str, FakeKubernetes]
) -> None:
    api_url, fake = kubernetes_api
    two_gpus = tiny_job(device=pb.COMPUTE_DEVICE_CUDA, gpu_count=2)
    async with service_with_a_job(persona_home, api_url, fake, two_gpus) as (stub, job, name):
        assert fake.created[0]["spec"]["template"]["spec"]["containers"][0]["command"][1:3] == [
            "-m",
            "torch.distributed.run",
        ]
        fake.unschedulable(name, "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
        await wait_for(
            lambda: any(
                "is pending: Unschedulable" in e.message
                for e in JobStore(persona_home / "jobs.db").events(job.id)
            ),
            "the pending pod's event",
        )
        fake.fail_pod(name, "Evicted", "The node was low on resource: memory.")
        fake.fail_pod(
            name, "Evicted", "The node was low on resource: memory.", log="loading the base model\n"
        )
        failed = await finished(stub, job.id)
        log = await messages(stub, job.id)
    assert failed.state == pb.JOB_STATE_FAILED and failed.error_code == "pod_evicted"
    assert "BackoffLimitExceeded" in failed.error_message
    assert f"its last pod {name}-1: Evicted: The node was low on resource: memory." in failed.error_message
    assert "log tail: loading the base model" in failed.error_message
    # The first eviction, as it happened.
    assert any(m.startswith(f"pod {name}-0 failed (Evicted") for m in log)
    assert any("0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in m for m in log)


async def test_cancel_deletes_the_job_with_foreground_propagation(
    persona_home: Path, kubernetes_api: tuple[str, FakeKubernetes]
) -> None:
    api_url, fake = kubernetes_api
    async with service_with_a_job(persona_home, api_url, fake) as (stub, job, name):
        JobStore(persona_home / "jobs.db").set_state(job.id, "running", "training started")  # as the worker
        await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
        cancelled = await finished(stub, job.id)
    assert cancelled.state == pb.JOB_STATE_CANCELLED, cancelled.error_message
    assert fake.deleted == [(name, "Foreground")] and not fake.jobs


async def test_a_restarted_service_adopts_its_running_job_instead_of_starting_another(
    persona_home: Path, kubernetes_api: tuple[str, FakeKubernetes]
) -> None:
    api_url, fake = kubernetes_api
    settings = settings_for(persona_home, api_url)
    store = JobStore(persona_home / "jobs.db")
    async with service_with_a_job(persona_home, api_url, fake) as (_stub, job, name):
        store.set_state(job.id, "running", "training started")  # the worker in the pod
    assert fake.deleted == [] and name in fake.jobs  # stopping the service leaves the Job running

    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.TrainingServiceStub(srv.channel())
        await wait_for(
            lambda: any("started before the service restarted" in e.message for e in store.events(job.id)),
            "the adoption",
        )
        store.set_state(job.id, "succeeded", "adapter saved", adapter_path="adapters/k8s")  # the worker again
        fake.succeed(name)
        done = await finished(stub, job.id)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    assert len(fake.created) == 1  # followed, not created twice


def test_the_kubernetes_launcher_needs_an_image(persona_home: Path) -> None:
    settings = settings_for(persona_home, "http://127.0.0.1:9").model_copy(update={"kubernetes_image": ""})
    with pytest.raises(FailedPrecondition, match="TALKLIKE_TRAINING_KUBERNETES_IMAGE"):
        create_service(settings)


@pytest.mark.parametrize(
    "compute",
    [Compute(device="cpu"), Compute(device="cuda", gpu_count=4, quantization="nf4")],
    ids=["cpu", "4-gpus"],
)
def test_the_job_manifest_passes_strict_validation(compute: Compute, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "http://127.0.0.1:9")
    spec = JobSpec(
        backend="peft",
        dataset_path="datasets/persona/train.jsonl",
        validation_dataset_path="",
        base_model="tiny",
        adapter_name="a",
        compute=compute,
    )
    manifest = job_manifest(settings, Path("/data"), NAMESPACE, "job-1a2b3c4d", spec)
    limits = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits.get("nvidia.com/gpu", 0) == (4 if compute.device == "cuda" else 0)
    validate_strictly(manifest, tmp_path)
