"""Settings from environment variables, one class per service.

Settings every service shares are read from unprefixed variables (``TALKLIKE_HOME``,
``TALKLIKE_AUTH_TOKEN``...), so one environment configures a whole stack; a service's own
settings carry its prefix (``TALKLIKE_GENERATION_PORT``). ``talklike serve NAME --help``
lists every setting with its variable and default, from these classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from talklike.common.paths import data_home


class ServiceSettings(BaseSettings):
    """What every talklike server has: address, data home, auth, TLS, metrics, logs, drain."""

    # populate_by_name: keywords use field names (``home=``); the environment uses the aliases.
    model_config = SettingsConfigDict(env_prefix="TALKLIKE_", populate_by_name=True, extra="ignore")

    #: Short service name used on the command line and in env prefixes ("generation", "disk-agent").
    service: ClassVar[str] = ""
    #: Full protobuf service name; readiness is reported under it.
    full_name: ClassVar[str] = ""

    home: Path = Field(
        default_factory=lambda: data_home(),
        validation_alias="TALKLIKE_HOME",
        description="Data home: datasets, jobs.db, adapters, models cache, reports, logs.",
    )
    auth_token: str = Field(
        default="",
        validation_alias="TALKLIKE_AUTH_TOKEN",
        description="Bearer token every RPC must carry (health stays open); empty disables auth.",
    )
    tls_cert_file: str = Field(
        default="",
        validation_alias="TALKLIKE_TLS_CERT_FILE",
        description="PEM certificate chain; with the key file, the server speaks TLS.",
    )
    tls_key_file: str = Field(
        default="",
        validation_alias="TALKLIKE_TLS_KEY_FILE",
        description="PEM private key for the certificate.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        validation_alias="TALKLIKE_LOG_LEVEL",
        description="Lowest log level written.",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        validation_alias="TALKLIKE_LOG_FORMAT",
        description="Structured JSON lines (default) or plain text.",
    )
    host: str = Field(default="127.0.0.1", description="Interface the gRPC server binds to.")
    port: int = Field(default=0, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus /metrics HTTP port (0 disables it)."
    )
    drain_grace_s: float = Field(
        default=30.0, gt=0, description="On SIGTERM, how long in-flight calls may run before they are cut."
    )
    max_message_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest gRPC message accepted or sent, in bytes."
    )

    @classmethod
    def env_prefix(cls) -> str:
        """The prefix of this service's own variables, e.g. ``TALKLIKE_GENERATION_``."""
        return str(cls.model_config.get("env_prefix", "TALKLIKE_"))

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC server."""
        return f"{self.host}:{self.port}"
