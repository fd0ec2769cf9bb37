"""Settings of the disk agent (``TALKLIKE_DISK_AGENT_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict
from talklike.common.settings import ServiceSettings


class DiskAgentSettings(ServiceSettings):
    """Which cache it manages, its watermarks, and where caches may be migrated."""

    model_config = SettingsConfigDict(
        env_prefix="TALKLIKE_DISK_AGENT_", populate_by_name=True, extra="ignore"
    )
    service: ClassVar[str] = "disk-agent"
    full_name: ClassVar[str] = "talklike.v1.DiskAgentService"

    port: int = Field(default=50055, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(
        default=9455, ge=0, le=65535, description="Prometheus /metrics port (0 disables it)."
    )
    models_dir: Path | None = Field(
        default=None,
        description="The models cache it manages (the HF cache lies under it in hf/hub); default <home>/models.",
    )
    capacity_bytes: int = Field(
        default=0,
        ge=0,
        description="Simulate a volume of this many bytes holding the cache (0: measure the real one).",
    )
    high_watermark: float = Field(
        default=0.85, gt=0, lt=1, description="Used fraction above which a volume is low on space."
    )
    low_watermark: float = Field(
        default=0.75, gt=0, lt=1, description="Used fraction eviction frees down to."
    )
    watch_interval_ms: int = Field(
        default=5000,
        ge=100,
        le=3_600_000,
        description="How often WatchUsage measures when the request does not say.",
    )
    migration_targets: str = Field(
        default="/workspace", description="Comma-separated directories Migrate may move caches under."
    )

    @model_validator(mode="after")
    def _watermarks_ordered(self) -> DiskAgentSettings:
        if self.low_watermark > self.high_watermark:
            raise ValueError("low_watermark must not be above high_watermark")
        return self

    @property
    def managed_models_dir(self) -> Path:
        """The models cache directory, resolved."""
        return (self.models_dir or self.home / "models").resolve()

    @property
    def allowed_migration_targets(self) -> list[Path]:
        """Migration targets as resolved paths."""
        return [
            Path(p.strip()).expanduser().resolve() for p in self.migration_targets.split(",") if p.strip()
        ]
