"""Settings of the generation service (``TALKLIKE_GENERATION_*``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from talklike.common.settings import ServiceSettings


class GenerationSettings(ServiceSettings):
    """Defaults of dataset runs, token counting, prices, and the LLM used for questions."""

    model_config = SettingsConfigDict(
        env_prefix="TALKLIKE_GENERATION_", populate_by_name=True, extra="ignore"
    )
    service: ClassVar[str] = "generation"
    full_name: ClassVar[str] = "talklike.v1.GenerationService"

    port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(
        default=9451, ge=0, le=65535, description="Prometheus /metrics port (0 disables it)."
    )
    token_model: str = Field(
        default="gpt-4o-mini-2024-07-18",
        description="Model whose tokenizer counts tokens in stats.json and ValidateDataset.",
    )
    price_table_file: str = Field(
        default="",
        description="YAML mapping model (or prefix) → {training_usd_per_million, example_token_limit}; "
        "overrides the built-in training prices.",
    )
    llm_base_urls: str = Field(
        default="https://api.openai.com/v1",
        description="Comma-separated base URLs of the OpenAI-compatible endpoints the service's own key "
        "(llm_api_key_env) may be sent to.",
    )
    llm_other_endpoints: bool = Field(
        default=True,
        description="A request may name an endpoint outside llm_base_urls; it gets only the request's own "
        "llm.api_key, never the service's. false = such requests are refused (PERMISSION_DENIED).",
    )
    llm_api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="Environment variable holding the service's API key, sent only to llm_base_urls.",
    )
    llm_temperature: float = Field(
        default=0.7, ge=0, le=2, description="Sampling temperature of LLM questions."
    )
    llm_max_tokens: int = Field(
        default=2048, ge=16, le=65536, description="Most tokens one LLM reply may have."
    )
    llm_batch_size: int = Field(default=10, ge=1, le=100, description="Answers per LLM request.")
    llm_concurrency: int = Field(default=4, ge=1, le=64, description="LLM requests in flight at once.")
    llm_max_retries: int = Field(
        default=4, ge=0, le=20, description="Retries of a failed LLM request (connection, 429, 5xx)."
    )
    llm_backoff_s: float = Field(
        default=0.5, ge=0, le=60, description="First retry delay in seconds; doubles on each retry."
    )
    llm_timeout_s: float = Field(
        default=120.0, gt=0, le=3600, description="Timeout of one LLM request, seconds."
    )
    llm_malformed_retries: int = Field(
        default=1, ge=0, le=10, description="Times a batch is asked again after a malformed reply."
    )
