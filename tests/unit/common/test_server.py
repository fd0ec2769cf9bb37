"""The server runtime through real calls: health, reflection, auth, metrics, drain, TLS, limits."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from talklike.common.errors import FailedPrecondition
from talklike.common.server import DRAINING_MESSAGE, ServiceServer
from talklike.common.service import ServiceBinding
from talklike.common.settings import ServiceSettings
from talklike.common.testing import running_service
from talklike_sample_service import FULL_NAME, create_sample_service, method


async def readiness(channel: grpc.aio.Channel, service: str = FULL_NAME) -> str:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def listed_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request])):
        return {service.name for service in reply.list_services_response.service}
    raise AssertionError("no reflection reply")


async def test_health_and_reflection(sample_binding: ServiceBinding) -> None:
    async with running_service(sample_binding) as srv:
        channel = srv.channel()
        assert await readiness(channel, "") == "SERVING"
        assert await readiness(channel) == "SERVING"
        assert await listed_services(channel) == {
            FULL_NAME,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        assert await channel.unary_unary(method("Echo"))(b"hi") == b"hi"


async def test_readiness_waits_for_on_start_hooks() -> None:
    server = ServiceServer(ServiceSettings(port=0), create_sample_service(on_start_delay_s=0.5))
    starting = asyncio.ensure_future(server.start())
    while server.port == 0:
        await asyncio.sleep(0.01)
    async with grpc.aio.insecure_channel(server.address) as channel:
        assert await readiness(channel, "") == "SERVING", "liveness answers while the hooks run"
        assert await readiness(channel) == "NOT_SERVING"
        await starting
        assert await readiness(channel) == "SERVING"
    await server.stop(1)


async def test_failing_on_start_hook_stops_the_server(free_port: Callable[[], int]) -> None:
    async def broken() -> None:
        raise RuntimeError("model missing")

    binding = create_sample_service()
    binding.on_start.append(broken)
    port = free_port()
    server = ServiceServer(ServiceSettings(port=port), binding)
    with pytest.raises(RuntimeError, match="model missing"):
        await server.start()
    # The port is released: another server can take it.
    again = ServiceServer(ServiceSettings(port=port), create_sample_service())
    assert await again.start() == port
    await again.stop(1)


async def test_auth_rejects_and_accepts_and_health_stays_open(sample_binding: ServiceBinding) -> None:
    settings = ServiceSettings(port=0, auth_token="s3cret")
    async with running_service(sample_binding, settings) as srv:
        echo_with_token = srv.channel().unary_unary(method("Echo"))
        assert await echo_with_token(b"ok") == b"ok"
        for token in ("", "wrong", "s3cret-but-longer"):
            channel = srv.channel(token=token)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(method("Echo"))(b"x")
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "TALKLIKE_AUTH_TOKEN" in (caught.value.details() or "")
            # Streaming shapes are guarded too.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in channel.unary_stream(method("Count"))(b"2"):
                    pass
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # Probes and tooling need no token.
            assert await readiness(channel) == "SERVING"
            assert FULL_NAME in await listed_services(channel)
        plain = srv.channel(token="")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await plain.unary_unary(method("Echo"))(b"x", metadata=(("authorization", "s3cret"),))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, "the Bearer scheme is required"


async def test_metrics_endpoint(sample_binding: ServiceBinding, free_port: Callable[[], int]) -> None:
    settings = ServiceSettings(port=0, metrics_port=free_port(), auth_token="t")
    async with running_service(sample_binding, settings) as srv:
        assert srv.server.metrics_port == settings.metrics_port
        await srv.channel().unary_unary(method("Echo"))(b"a")
        await srv.channel().unary_unary(method("Echo"))(b"b")
        with pytest.raises(grpc.aio.AioRpcError):
            await srv.channel().unary_unary(method("Raise"))(b"not_found")
        with pytest.raises(grpc.aio.AioRpcError):
            await srv.channel(token="").unary_unary(method("Echo"))(b"c")
        url = f"http://127.0.0.1:{srv.server.metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    echo, raise_ = method("Echo"), method("Raise")
    assert f'talklike_grpc_requests_total{{code="OK",method="{echo}",service="{FULL_NAME}"}} 2.0' in text
    assert f'code="NOT_FOUND",method="{raise_}"' in text
    assert f'code="UNAUTHENTICATED",method="{echo}"' in text
    assert (
        f'talklike_grpc_request_duration_seconds_count{{method="{echo}",service="{FULL_NAME}"}} 3.0' in text
    )
    assert f'talklike_grpc_in_flight{{method="{echo}",service="{FULL_NAME}"}} 0.0' in text


async def test_metrics_of_two_servers_do_not_collide(free_port: Callable[[], int]) -> None:
    first = ServiceSettings(port=0, metrics_port=free_port())
    second = ServiceSettings(port=0, metrics_port=free_port())
    async with (
        running_service(create_sample_service(), first) as one,
        running_service(create_sample_service(), second) as two,
    ):
        await one.channel().unary_unary(method("Echo"))(b"x")
        assert one.server.metrics.registry is not two.server.metrics.registry
        samples = two.server.metrics.requests.collect()[0].samples
        assert not [s for s in samples if s.labels.get("method") == method("Echo")]


async def test_drain_flips_readiness_at_once_and_finishes_in_flight_calls() -> None:
    async with running_service(create_sample_service()) as srv:
        channel = srv.channel()
        in_flight = asyncio.ensure_future(channel.unary_unary(method("Sleep"))(b"1.0"))
        while srv.server.gate.in_flight == 0:
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(srv.server.stop(10))
        await asyncio.sleep(0.05)
        assert await readiness(channel) == "NOT_SERVING"
        assert await readiness(channel, "") == "SERVING", "liveness holds while draining"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(method("Echo"))(b"late")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == DRAINING_MESSAGE
        assert not stopping.done()
        assert await in_flight == b"done"
        await asyncio.wait_for(stopping, 5)


async def test_drain_cancels_calls_that_outlive_the_grace() -> None:
    stopped: list[str] = []

    async def on_stop() -> None:
        stopped.append("hook")

    binding = create_sample_service()
    binding.on_stop.append(on_stop)
    async with running_service(binding) as srv:
        call = asyncio.ensure_future(srv.channel().unary_unary(method("Sleep"))(b"30"))
        while srv.server.gate.in_flight == 0:
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await srv.server.stop(0.3)
        assert loop.time() - started < 3
        with pytest.raises(grpc.aio.AioRpcError):
            await call
    assert stopped == ["hook"]


async def test_taken_port_is_named(free_port: Callable[[], int]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = ServiceServer(ServiceSettings(port=port), create_sample_service())
        with pytest.raises(FailedPrecondition, match=f"127.0.0.1:{port}.*taken"):
            await server.start()


async def test_max_message_size(sample_binding: ServiceBinding) -> None:
    settings = ServiceSettings(port=0, max_message_bytes=4096)
    async with running_service(sample_binding, settings) as srv:
        echo = srv.channel().unary_unary(method("Echo"))
        assert await echo(b"x" * 1000) == b"x" * 1000
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await echo(b"x" * 10_000)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_tls_needs_both_files(tmp_path: Path) -> None:
    settings = ServiceSettings(port=0, tls_cert_file=str(tmp_path / "cert.pem"))
    server = ServiceServer(settings, create_sample_service())
    with pytest.raises(FailedPrecondition, match="set both or neither"):
        asyncio.run(server.start())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
async def test_tls(sample_binding: ServiceBinding, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    settings = ServiceSettings(port=0, tls_cert_file=str(cert), tls_key_file=str(key), auth_token="t")
    async with running_service(sample_binding, settings) as srv:
        assert await srv.channel().unary_unary(method("Echo"))(b"secure") == b"secure"
        async with grpc.aio.insecure_channel(srv.address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await plain.unary_unary(method("Echo"))(b"x", timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_binding_collectors_appear_on_metrics(free_port: Callable[[], int]) -> None:
    from prometheus_client import Gauge

    queue_depth = Gauge("talklike_sample_queue_depth", "Items waiting.", registry=None)
    queue_depth.set(7)
    binding = create_sample_service()
    binding.collectors.append(queue_depth)
    async with running_service(binding, ServiceSettings(port=0, metrics_port=free_port())) as srv:
        url = f"http://127.0.0.1:{srv.server.metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert "talklike_sample_queue_depth 7.0" in text
