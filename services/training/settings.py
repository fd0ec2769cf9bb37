"""Settings of the training service (``TALKLIKE_TRAINING_*``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
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
    openai_base_url: str = Field(default="", description="OpenAI backend: API base URL (empty = OpenAI's).")
    openai_poll_interval_ms: int = Field(
        default=5000, ge=10, description="OpenAI backend: first polling interval (it backs off up to 60 s)."
    )
