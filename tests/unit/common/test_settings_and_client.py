"""Settings from the environment (shared vs prefixed), the registry's consistency, and client channels."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from talklike.common import client, registry
from talklike.common.errors import DeadlineExceeded, FailedPrecondition
from talklike.common.logs import configure_logging, request_id_var
from talklike.common.service import ServiceBinding
from talklike.common.settings import ServiceSettings
from talklike.common.testing import running_service
from talklike_sample_service import method


class FooSettings(ServiceSettings):
    """A service's settings class as DEVELOPING.md prescribes."""

    model_config = SettingsConfigDict(env_prefix="TALKLIKE_FOO_", populate_by_name=True, extra="ignore")
    service: ClassVar[str] = "foo"
    full_name: ClassVar[str] = "talklike.v1.FooService"
    port: int = Field(default=50999, ge=0, le=65535, description="gRPC port.")
    batch_size: int = Field(default=8, description="A service-specific setting.")


def test_prefixed_and_shared_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert FooSettings().port == 50999
    monkeypatch.setenv("TALKLIKE_FOO_PORT", "6000")
    monkeypatch.setenv("TALKLIKE_FOO_BATCH_SIZE", "32")
    monkeypatch.setenv("TALKLIKE_PORT", "7000")  # not this service's prefix: ignored
    monkeypatch.setenv("TALKLIKE_HOME", str(tmp_path))
    monkeypatch.setenv("TALKLIKE_AUTH_TOKEN", "tok")
    monkeypatch.setenv("HOME", "/somewhere/else")
    settings = FooSettings()
    assert (settings.port, settings.batch_size) == (6000, 32)
    assert settings.home == tmp_path
    assert settings.auth_token == "tok"
    assert FooSettings.env_prefix() == "TALKLIKE_FOO_"
    assert FooSettings(port=1234, home=tmp_path / "x").port == 1234, "keywords override the environment"


def test_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKLIKE_FOO_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        FooSettings()


@pytest.mark.parametrize("name", sorted(registry.SERVICES))
def test_registry_matches_each_settings_class(name: str) -> None:
    entry = registry.get(name)
    try:
        settings_class = entry.settings_class()
    except ModuleNotFoundError as error:
        pytest.skip(f"{name} is not written yet ({error})")
    assert settings_class.service == name
    assert settings_class.full_name == entry.full_name
    assert settings_class.env_prefix() == client.env_name(name, "")
    defaults = settings_class()
    assert (defaults.port, defaults.metrics_port) == (entry.default_port, entry.default_metrics_port)


def test_registry_unknown_name() -> None:
    with pytest.raises(KeyError, match="known: generation"):
        registry.get("nope")


def test_address_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.address_for("generation") == "127.0.0.1:50051"
    assert client.address_for("disk-agent") == "127.0.0.1:50055"
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_PORT", "6055")
    assert client.address_for("disk-agent") == "127.0.0.1:6055"
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_ADDRESS", "agent.internal:7000")
    assert client.address_for("disk-agent") == "agent.internal:7000"
    assert client.address_for("generation", env={"TALKLIKE_GENERATION_ADDRESS": "g:1"}) == "g:1"


async def test_connect_sends_the_token(
    sample_binding: ServiceBinding, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_service(sample_binding, ServiceSettings(port=0, auth_token="tok")) as srv:
        monkeypatch.setenv("TALKLIKE_GENERATION_ADDRESS", srv.address)

        def sync_echo() -> bytes:
            with client.connect("generation") as channel:
                return bytes(channel.unary_unary(method("Echo"))(b"sync", timeout=5))

        monkeypatch.setenv("TALKLIKE_AUTH_TOKEN", "tok")
        assert await asyncio.to_thread(sync_echo) == b"sync"
        async with client.aio_connect("generation") as channel:
            assert await channel.unary_unary(method("Echo"))(b"aio") == b"aio"
            assert [item async for item in channel.unary_stream(method("Count"))(b"2")] == [b"0", b"1"]
            assert await channel.stream_unary(method("Collect"))(iter([b"a", b"b"])) == b"a,b"
            assert [item async for item in channel.stream_stream(method("Chat"))(iter([b"c"]))] == [b"C"]

        def sync_stream() -> list[bytes]:
            with client.connect("generation") as channel:
                return list(channel.unary_stream(method("Count"))(b"2", timeout=5))

        assert await asyncio.to_thread(sync_stream) == [b"0", b"1"]
        monkeypatch.setenv("TALKLIKE_AUTH_TOKEN", "bad")
        with pytest.raises(grpc.RpcError) as caught:
            await asyncio.to_thread(sync_echo)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


async def test_health_status_and_wait_ready(
    sample_binding: ServiceBinding, monkeypatch: pytest.MonkeyPatch, free_port: Callable[[], int]
) -> None:
    monkeypatch.setenv("TALKLIKE_GENERATION_ADDRESS", f"127.0.0.1:{free_port()}")
    assert await asyncio.to_thread(client.health_status, "generation") == client.UNREACHABLE
    with pytest.raises(DeadlineExceeded, match="not ready within"):
        await asyncio.to_thread(client.wait_ready, "generation", 0.3)
    async with running_service(sample_binding) as srv:
        monkeypatch.setenv("TALKLIKE_GENERATION_ADDRESS", srv.address)
        # The sample service is not the generation service: its readiness key is unknown there.
        assert await asyncio.to_thread(client.health_status, "generation") == "SERVICE_UNKNOWN"
        assert await asyncio.to_thread(client.health_status, "generation", service="") == "SERVING"
        assert (
            await asyncio.to_thread(client.health_status, "generation", service="talklike.test.Sample")
            == "SERVING"
        )


def test_wait_ready_stops_when_the_process_died(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Exception, match="exited before it was ready"):
        client.wait_ready("generation", 30, alive=lambda: False)


def test_unreadable_ca_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TALKLIKE_TLS_CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(FailedPrecondition, match="TALKLIKE_TLS_CA_FILE"):
        client.connect("generation")


def test_json_logs_carry_service_request_id_and_extras() -> None:
    stream = io.StringIO()
    handler = configure_logging(FooSettings(), stream=stream)
    try:
        token = request_id_var.set("abc123")
        logging.getLogger("talklike.test").info("hello %s", "world", extra={"items": 3})
        request_id_var.reset(token)
        logging.getLogger("talklike.test").debug("hidden at INFO")
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("talklike.test").exception("failed")
        configure_logging(FooSettings(), stream=stream)  # configuring again must not double the lines
        logging.getLogger("talklike.test").warning("once")
    finally:
        for installed in list(logging.getLogger().handlers):
            if installed is handler or getattr(installed, "_talklike_handler", False):
                logging.getLogger().removeHandler(installed)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["message"] for e in entries] == ["hello world", "failed", "once"]
    first = entries[0]
    assert first["service"] == "foo" and first["logger"] == "talklike.test" and first["level"] == "INFO"
    assert first["request_id"] == "abc123" and first["items"] == 3 and "time" in first
    assert "request_id" not in entries[1]
    assert "ValueError: bad" in entries[1]["traceback"]


def test_text_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKLIKE_LOG_FORMAT", "text")
    stream = io.StringIO()
    handler = configure_logging(FooSettings(), stream=stream)
    try:
        logging.getLogger("talklike.test").warning("plain")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "WARNING" in stream.getvalue() and "foo talklike.test: plain" in stream.getvalue()
