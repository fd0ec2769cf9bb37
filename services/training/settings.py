"""Settings of the training service (``TALKLIKE_TRAINING_*``)."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict
from talklike.common.settings import ServiceSettings


class TrainingSettings(ServiceSettings):
    """Where jobs live, how the worker runs, and which services to tell about new adapters."""

    model_config = SettingsConfigDict(env_prefix="TALKLIKE_TRAINING_", populate_by_name=True, extra="ignore")
    service: ClassVar[str] = "training"
    full_name: ClassVar[str] = "talklike.v1.TrainingService"

    port: int = Field(default=50053, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(
        default=9453, ge=0, le=65535, description="Prometheus /metrics port (0 disables it)."
    )
    poll_interval_ms: int = Field(
        default=200,
        ge=10,
        le=10_000,
        description="How often event streams and the worker watcher look for news.",
    )
    notify_inference: bool = Field(
        default=True, description="Load a finished adapter into the inference service when it is reachable."
    )
    use_disk_agent: bool = Field(
        default=True,
        description="Ask the disk agent for space before model conversion and training, when reachable.",
    )
    model_roots: str = Field(
        default="",
        description="Comma-separated folders outside the data home whose model directories and .gguf files "
        "a job may name as base_model (<home>/models is always allowed).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where a PEFT job trains when its request leaves compute.device unset: auto (CUDA when "
        "the worker sees a GPU, else the CPU), cpu or cuda (a job fails clearly on a node without a GPU).",
    )
    gpu_memory_fraction: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Share of a GPU's free memory a job may plan to use; a job whose memory estimate is "
        "larger is refused before its model loads, with the setting that would make it fit.",
    )
    launcher: Literal["local", "kubernetes"] = Field(
        default="local",
        description="How PEFT jobs run: local (a worker subprocess beside the service, on its machine) or "
        "kubernetes (one batch/v1 Job per training job, on the nodes the kubernetes_* settings pick; "
        "the service itself then needs no GPU).",
    )
    kubernetes_api_url: str = Field(
        default="",
        description="Kubernetes launcher: the API server; empty = the pod's service account (in-cluster), "
        "else the local kubeconfig.",
    )
    kubernetes_namespace: str = Field(
        default="",
        description="Kubernetes launcher: the namespace of the Jobs; empty = the service's own namespace.",
    )
    kubernetes_image: str = Field(
        default="",
        description="Kubernetes launcher: the worker's image (required): talklike with a CUDA build of torch "
        "and peft, e.g. the GPU image deploy/Dockerfile.vllm builds.",
    )
    kubernetes_data_claim: str = Field(
        default="talklike-data",
        description="Kubernetes launcher: the PersistentVolumeClaim of the data home, mounted at the "
        "service's home path (ReadWriteMany when Jobs run on other nodes than the service).",
    )
    kubernetes_gpu_resource: str = Field(
        default="nvidia.com/gpu",
        description="Kubernetes launcher: the extended resource a Job asks compute.gpu_count of (none for "
        "compute.device cpu).",
    )
    kubernetes_node_selector: dict[str, str] = Field(
        default_factory=dict,
        description='Kubernetes launcher: the Job pods\' nodeSelector, as JSON, e.g. {"nvidia.com/gpu.present": "true"}.',
    )
    kubernetes_tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Kubernetes launcher: the Job pods\' tolerations, as JSON, e.g. [{"key": "nvidia.com/gpu", '
        '"operator": "Exists", "effect": "NoSchedule"}].',
    )
    kubernetes_cpu: str = Field(default="4", description="Kubernetes launcher: CPU a Job pod requests.")
    kubernetes_memory: str = Field(
        default="32Gi", description="Kubernetes launcher: memory a Job pod requests (and its limit)."
    )
    kubernetes_config_maps: str = Field(
        default="talklike-common,talklike-training",
        description="Kubernetes launcher: comma-separated ConfigMaps whose variables the worker gets.",
    )
    kubernetes_auth_secret: str = Field(
        default="talklike-secrets",
        description="Kubernetes launcher: Secret whose TALKLIKE_AUTH_TOKEN the worker uses to reach the "
        "inference service (empty = none).",
    )
    kubernetes_backoff_limit: int = Field(
        default=2,
        ge=0,
        le=20,
        description="Kubernetes launcher: failed pods Kubernetes replaces before the Job fails (each new pod "
        "resumes from the last checkpoint).",
    )
    kubernetes_ttl_after_finished_s: int = Field(
        default=86_400,
        ge=0,
        description="Kubernetes launcher: seconds a finished Job is kept before deletion.",
    )
    kubernetes_poll_interval_ms: int = Field(
        default=2000,
        ge=10,
        le=60_000,
        description="Kubernetes launcher: how often a Job and its pods are read.",
    )
    openai_base_url: str = Field(default="", description="OpenAI backend: API base URL (empty = OpenAI's).")
    openai_poll_interval_ms: int = Field(
        default=5000, ge=10, description="OpenAI backend: first polling interval (it backs off up to 60 s)."
    )

    @field_validator("kubernetes_node_selector", "kubernetes_tolerations", mode="before")
    @classmethod
    def _json(cls, value: Any, info: ValidationInfo) -> Any:
        """JSON text (as an environment variable or a ConfigMap gives it) becomes the object."""
        if isinstance(value, str):
            empty: Any = {} if info.field_name == "kubernetes_node_selector" else []
            return json.loads(value) if value.strip() else empty
        return value
