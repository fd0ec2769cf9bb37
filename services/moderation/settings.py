"""Settings of the moderation service (``TALKLIKE_MODERATION_*``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from talklike.common.settings import ServiceSettings


class ModerationSettings(ServiceSettings):
    """The default backend, batch limits, the OpenAI client's limits, and the pre-flight limit."""

    model_config = SettingsConfigDict(
        env_prefix="TALKLIKE_MODERATION_", populate_by_name=True, extra="ignore"
    )
    service: ClassVar[str] = "moderation"
    full_name: ClassVar[str] = "talklike.v1.ModerationService"

    port: int = Field(default=50052, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(
        default=9452, ge=0, le=65535, description="Prometheus /metrics port (0 disables it)."
    )
    backend: Literal["local", "openai"] = Field(
        default="local", description="Backend used when a request does not name one (local = offline)."
    )
    max_batch_texts: int = Field(
        default=4096, ge=1, le=100_000, description="Most texts one Moderate request may carry."
    )
    max_text_chars: int = Field(
        default=100_000, ge=100, le=10_000_000, description="Longest text accepted, in characters."
    )
    flagged_share_limit: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Pre-flight: a file whose share of policy-violating examples is over this is likely "
        "blocked by OpenAI's training-file gate (the real limit is undisclosed).",
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1", description="Base URL of the OpenAI API (moderations endpoint)."
    )
    openai_model: str = Field(default="omni-moderation-latest", description="OpenAI moderation model.")
    openai_api_key_env: str = Field(
        default="OPENAI_API_KEY", description="Environment variable holding the OpenAI API key."
    )
    openai_batch_size: int = Field(
        default=32, ge=1, le=1000, description="Texts per moderation request (array input)."
    )
    openai_requests_per_minute: float = Field(
        default=300.0, gt=0, le=100_000, description="Most moderation requests started per minute."
    )
    openai_concurrency: int = Field(
        default=4, ge=1, le=64, description="Moderation requests in flight at once."
    )
    openai_max_retries: int = Field(
        default=5, ge=0, le=20, description="Retries of a request after a connection error, 429 or 5xx."
    )
    openai_backoff_s: float = Field(
        default=1.0, ge=0, le=120, description="First retry delay in seconds; doubles on each retry."
    )
    openai_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Timeout of one request, seconds."
    )
