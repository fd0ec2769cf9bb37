"""Training jobs as Kubernetes Jobs: the worker on a GPU node, the training service on any node.

``TALKLIKE_TRAINING_LAUNCHER=kubernetes``: for each PEFT job the service creates one ``batch/v1``
Job — the same image family and worker entry point as the local launcher (``worker_command``), the
data home's volume mounted at the same path, ``compute.gpu_count`` GPUs of the configured resource,
the configured node selector and tolerations — and follows it and its pods through the API with the
official ``kubernetes`` client (the ``k8s`` extra), imported only when this launcher is chosen.

The worker writes the job's progress into the job store on the shared volume, as it does locally.
The launcher adds what only Kubernetes knows: a pod that cannot be scheduled, a pod that failed or
was evicted (Kubernetes replaces it up to ``backoffLimit`` times; the new pod resumes from the last
checkpoint), and, when the Job itself fails, the last pod's reason and log tail in the job's error.
CancelJob deletes the Job with foreground propagation (its pods go first). Jobs carry the label
``talklike.dev/training-job=<job id>``: a restarted service finds a running job's Job by it and
follows it instead of starting a second one; stopping the service leaves Jobs running.

The service account needs what ``PERMISSIONS`` lists — the Role in k8s/base/training-rbac.yaml.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from talklike.common.errors import FailedPrecondition
from talklike.training.launcher import WorkerExit, worker_command
from talklike.training.settings import TrainingSettings
from talklike.training.spec import JobSpec

LABEL = "talklike.dev/training-job"
#: The container's Python: python3 is on PATH in both the CPU image and the vLLM-based GPU image.
PYTHON = "python3"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Error codes by the failed pod's reason.
POD_FAILURES = {
    "Evicted": "pod_evicted",
    "OOMKilled": "pod_oom_killed",
    "DeadlineExceeded": "pod_deadline_exceeded",
}
#: (API group, resource, verb) of every call this launcher makes: what its Role must grant.
PERMISSIONS = (
    ("batch", "jobs", "create"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "delete"),
    ("", "pods", "list"),
    ("", "pods/log", "get"),
)
#: Lines of a failed pod's log put into the job's error.
LOG_TAIL_LINES = 20


def job_name(job_id: str) -> str:
    """The Job's name: a DNS label (job ids are ``job-`` and lowercase hex)."""
    return f"talklike-train-{job_id}".lower()[:63]


def job_manifest(
    settings: TrainingSettings, home: Path, namespace: str, job_id: str, spec: JobSpec
) -> dict[str, Any]:
    """The batch/v1 Job that runs one training job's worker."""
    gpus = spec.compute.gpu_count if spec.compute.device != "cpu" else 0
    labels = {
        "app.kubernetes.io/name": "training-job",
        "app.kubernetes.io/part-of": "talklike",
        LABEL: job_id,
    }
    env: list[dict[str, Any]] = [{"name": "TALKLIKE_HOME", "value": str(home)}]
    if settings.kubernetes_auth_secret:
        env.append(
            {
                "name": "TALKLIKE_AUTH_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": settings.kubernetes_auth_secret,
                        "key": "TALKLIKE_AUTH_TOKEN",
                        "optional": True,
                    }
                },
            }
        )
    resources: dict[str, Any] = {
        "requests": {"cpu": settings.kubernetes_cpu, "memory": settings.kubernetes_memory},
        "limits": {"memory": settings.kubernetes_memory},
    }
    if gpus:
        resources["limits"][settings.kubernetes_gpu_resource] = gpus
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "worker",
                "image": settings.kubernetes_image,
                "imagePullPolicy": "IfNotPresent",
                "command": worker_command(home, job_id, settings, spec.compute.gpu_count, python=PYTHON),
                "envFrom": [
                    {"configMapRef": {"name": name.strip()}}
                    for name in settings.kubernetes_config_maps.split(",")
                    if name.strip()
                ],
                "env": env,
                "resources": resources,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "data", "mountPath": str(home)},
                    {"name": "tmp", "mountPath": "/tmp"},
                    # NCCL exchanges data between the GPUs' processes through shared memory.
                    {"name": "shm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": settings.kubernetes_data_claim}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
        ],
    }
    if settings.kubernetes_node_selector:
        pod["nodeSelector"] = dict(settings.kubernetes_node_selector)
    if settings.kubernetes_tolerations:
        pod["tolerations"] = list(settings.kubernetes_tolerations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(job_id), "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": settings.kubernetes_backoff_limit,
            "ttlSecondsAfterFinished": settings.kubernetes_ttl_after_finished_s,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def api_client(settings: TrainingSettings) -> Any:
    """A client of the API server: the URL from settings, else in-cluster, else the kubeconfig."""
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise FailedPrecondition(
            "TALKLIKE_TRAINING_LAUNCHER=kubernetes needs the kubernetes package: pip install 'talklike[k8s]'"
        ) from exc
    if settings.kubernetes_api_url:
        configuration = client.Configuration()
        configuration.host = settings.kubernetes_api_url
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def namespace_of(settings: TrainingSettings) -> str:
    if settings.kubernetes_namespace:
        return settings.kubernetes_namespace
    return NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else "default"


def pod_failure(pod: Any) -> tuple[str, str]:
    """A failed pod's reason and message: the pod's own (Evicted) or its container's (OOMKilled, Error)."""
    status = pod.status
    if status.reason:
        return status.reason, status.message or ""
    for container in status.container_statuses or []:
        ended = container.state.terminated if container.state else None
        if ended is not None:
            return ended.reason or "Error", f"exit code {ended.exit_code}" + (
                f": {ended.message}" if ended.message else ""
            )
    return "Failed", status.message or ""


def pending_reason(pod: Any) -> str:
    """Why a pending pod is not running, when Kubernetes said (e.g. Unschedulable: no GPU node)."""
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"{condition.reason}: {condition.message}"
    return ""


class KubernetesLauncher:
    """One Kubernetes Job per training job, followed until it ends."""

    def __init__(self, settings: TrainingSettings, home: Path, report: Callable[[str, str], None]) -> None:
        """``report(job_id, message)`` adds a log event to the job."""
        from kubernetes import client

        if not settings.kubernetes_image:
            raise FailedPrecondition(
                "TALKLIKE_TRAINING_LAUNCHER=kubernetes needs TALKLIKE_TRAINING_KUBERNETES_IMAGE: the worker's image"
            )
        self.settings = settings
        self.home = home
        self.report = report
        self.namespace = namespace_of(settings)
        api = api_client(settings)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self._stopping = threading.Event()

    async def run(self, job_id: str, spec: JobSpec) -> WorkerExit:
        return await asyncio.to_thread(self._run, job_id, spec)

    async def cancel(self, job_id: str) -> None:
        await asyncio.to_thread(self._delete, job_id)

    async def stop(self) -> None:
        """Stop following; the Jobs run on and a restarted service adopts them."""
        self._stopping.set()

    # -- blocking calls, in a thread ------------------------------------------------------------
    def _run(self, job_id: str, spec: JobSpec) -> WorkerExit:
        from kubernetes.client.exceptions import ApiException

        name = job_name(job_id)
        found = self.batch.list_namespaced_job(self.namespace, label_selector=f"{LABEL}={job_id}").items
        if found:
            name = found[0].metadata.name
            self.report(job_id, f"following the Kubernetes Job {name}, started before the service restarted")
        else:
            manifest = job_manifest(self.settings, self.home, self.namespace, job_id, spec)
            self.batch.create_namespaced_job(self.namespace, manifest)
            limits = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
            gpus = limits.get(self.settings.kubernetes_gpu_resource, 0)
            self.report(
                job_id,
                f"created the Kubernetes Job {name} in {self.namespace}"
                + (f" ({gpus} × {self.settings.kubernetes_gpu_resource})" if gpus else " (no GPU)"),
            )
        told: set[str] = set()
        interval = self.settings.kubernetes_poll_interval_ms / 1000
        while not self._stopping.is_set():
            try:
                job = self.batch.read_namespaced_job(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return WorkerExit(
                        "kubernetes_job_deleted",
                        f"the Kubernetes Job {name} was deleted before the job finished",
                    )
                self.report(
                    job_id, f"reading the Kubernetes Job {name} failed ({exc.status} {exc.reason}); retrying"
                )
                time.sleep(interval)
                continue
            pods = self._pods(job_id)
            self._tell(job_id, pods, told)
            status = job.status
            if status.succeeded:
                return WorkerExit(
                    "worker_incomplete",
                    f"the Kubernetes Job {name} completed but its worker recorded no outcome",
                )
            failed = next(
                (c for c in status.conditions or [] if c.type == "Failed" and c.status == "True"), None
            )
            if failed is not None:
                return self._failure(name, failed, pods)
            time.sleep(interval)
        return WorkerExit(locked=True)  # the service is stopping: the Job runs on

    def _pods(self, job_id: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{LABEL}={job_id}").items
        return sorted(pods, key=lambda p: p.metadata.creation_timestamp or 0)

    def _tell(self, job_id: str, pods: list[Any], told: set[str]) -> None:
        """One log event per pod that failed (Kubernetes replaces it) or cannot be scheduled."""
        for pod in pods:
            key = pod.metadata.name
            if pod.status.phase == "Failed" and f"failed {key}" not in told:
                told.add(f"failed {key}")
                reason, message = pod_failure(pod)
                self.report(
                    job_id,
                    f"pod {key} failed ({reason}: {message}); Kubernetes replaces it up to backoffLimit "
                    f"{self.settings.kubernetes_backoff_limit} times and the next pod resumes from the last checkpoint",
                )
            elif pod.status.phase == "Pending" and f"pending {key}" not in told:
                why = pending_reason(pod)
                if why:
                    told.add(f"pending {key}")
                    self.report(job_id, f"pod {key} is pending: {why}")

    def _failure(self, name: str, condition: Any, pods: list[Any]) -> WorkerExit:
        failed = [p for p in pods if p.status.phase == "Failed"]
        summary = f"the Kubernetes Job {name} failed ({condition.reason}: {condition.message})"
        if not failed:
            return WorkerExit("kubernetes_job_failed", summary)
        pod = failed[-1]
        reason, message = pod_failure(pod)
        return WorkerExit(
            POD_FAILURES.get(reason, "pod_failed"),
            f"{summary}; its last pod {pod.metadata.name}: {reason}: {message}{self._log_tail(pod)}",
        )

    def _log_tail(self, pod: Any) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            text = self.core.read_namespaced_pod_log(
                pod.metadata.name, self.namespace, container="worker", tail_lines=LOG_TAIL_LINES
            )
        except ApiException:
            return ""  # an evicted pod's log may be gone with its node
        return f"; log tail: {text.strip()[-1500:]}" if text and text.strip() else ""

    def _delete(self, job_id: str) -> None:
        from kubernetes.client.exceptions import ApiException

        for job in self.batch.list_namespaced_job(self.namespace, label_selector=f"{LABEL}={job_id}").items:
            try:
                self.batch.delete_namespaced_job(
                    job.metadata.name, self.namespace, propagation_policy="Foreground"
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
