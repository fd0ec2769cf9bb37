"""The one server runtime every talklike service runs on.

``ServiceServer(settings, binding)`` puts a service's servicer on a ``grpc.aio`` server with
what every service needs and none should write again: standard health (liveness ``""``,
readiness under the service's full name, SERVING only once the on_start hooks ran),
reflection, bearer-token auth, TLS, Prometheus metrics, the one error-mapping interceptor,
the request guard (undecodable requests and fields past their limits are INVALID_ARGUMENT,
``request_guard``), structured logs, a maximum message size, and a graceful drain.

Drain, in order: readiness turns NOT_SERVING at once (health stays reachable, so a load
balancer or ``talklike status`` sees it), new service calls are refused with UNAVAILABLE,
calls already running get up to ``drain_grace_s`` to finish, then the server stops and the
on_stop hooks run. ``serve()`` does this on SIGTERM/SIGINT and returns normally (exit 0); a
second signal cuts the drain short.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from talklike.common.auth import AuthInterceptor
from talklike.common.error_mapping import ErrorMappingInterceptor
from talklike.common.errors import FailedPrecondition
from talklike.common.handlers import ScopeInterceptor, is_infrastructure
from talklike.common.logs import configure_logging
from talklike.common.metrics import ServerMetrics
from talklike.common.request_guard import RequestGuardInterceptor
from talklike.common.service import ServiceBinding
from talklike.common.settings import ServiceSettings

logger = logging.getLogger(__name__)

HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

#: After the in-flight calls drained, how long gRPC may still flush their last messages.
_FLUSH_S = 0.25

DRAINING_MESSAGE = "the service is shutting down and takes no new calls; retry on another instance"


class DrainGate:
    """Counts the service calls in flight and refuses new ones once draining has begun.

    Health and reflection are not counted (a health Watch stream lives forever) and never
    refused: during the drain they must keep answering NOT_SERVING.
    """

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def scope(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        """Admit the call unless draining; track it until it ends."""
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING_MESSAGE)
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no call is in flight or ``timeout_s`` passed; True when idle."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(timeout_s, 0.0))
        except TimeoutError:
            return self.in_flight == 0
        return True


class ServiceServer:
    """One gRPC server for one service binding; see the module docstring for what it adds."""

    def __init__(self, settings: ServiceSettings, binding: ServiceBinding) -> None:
        self.settings = settings
        self.binding = binding
        self.metrics = ServerMetrics(settings.service or binding.full_name)
        for collector in binding.collectors:
            self.metrics.registry.register(collector)
        self.health = HealthServicer()
        self.gate = DrainGate()
        self.port = 0
        self.metrics_port = 0
        self._server: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._cut = asyncio.Event()

    @property
    def address(self) -> str:
        """``host:port`` the server listens on (the bound port once started)."""
        return f"{self.settings.host}:{self.port}"

    @property
    def grpc_server(self) -> grpc.aio.Server:
        """The underlying ``grpc.aio.Server`` (only after ``start``)."""
        if self._server is None:
            raise RuntimeError("the server has not been started")
        return self._server

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        # Outermost first: metrics see every outcome (incl. UNAUTHENTICATED and draining refusals);
        # error mapping is innermost, right around the servicer.
        chain: list[grpc.aio.ServerInterceptor] = [self.metrics.interceptor()]
        if self.settings.auth_token:
            chain.append(AuthInterceptor(self.settings.auth_token))
        chain.append(
            ScopeInterceptor(self.gate.scope, applies_to=lambda method: not is_infrastructure(method))
        )
        chain.append(ErrorMappingInterceptor())
        chain.append(RequestGuardInterceptor())  # inside error mapping: its refusals map like any other
        return chain

    @property
    def max_request_bytes(self) -> int:
        """The receive limit: the service's own (``binding.max_request_bytes``) under the settings' one."""
        own = self.binding.max_request_bytes
        return min(own, self.settings.max_message_bytes) if own else self.settings.max_message_bytes

    def _options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", self.max_request_bytes),
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
            # Without this, a second server on a taken port binds silently and steals half the calls.
            ("grpc.so_reuseport", 0),
        ]

    def _bind(self, server: grpc.aio.Server) -> int:
        address = f"{self.settings.host}:{self.settings.port}"
        cert_file, key_file = self.settings.tls_cert_file, self.settings.tls_key_file
        if bool(cert_file) != bool(key_file):
            raise FailedPrecondition(
                "TLS needs both TALKLIKE_TLS_CERT_FILE and TALKLIKE_TLS_KEY_FILE; set both or neither"
            )
        try:
            if cert_file:
                credentials = grpc.ssl_server_credentials(
                    [
                        (
                            _read_pem(key_file, "TALKLIKE_TLS_KEY_FILE"),
                            _read_pem(cert_file, "TALKLIKE_TLS_CERT_FILE"),
                        )
                    ]
                )
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise FailedPrecondition(
                f"cannot listen on {address}: the port is taken or the host is not a local address; "
                f"stop what holds it or choose another port ({self.settings.env_prefix()}PORT)"
            ) from error
        if port == 0:
            raise FailedPrecondition(f"cannot listen on {address}; choose another port")
        return port

    async def start(self) -> int:
        """Bind, start serving, run the on_start hooks, then report SERVING; returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the server was already started")
        server = grpc.aio.server(interceptors=self._interceptors(), options=self._options())
        self._server = server
        self.binding.register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self.health.set(self.binding.full_name, NOT_SERVING)
        reflection.enable_server_reflection(
            (
                self.binding.full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        self.port = self._bind(server)
        await server.start()
        try:
            host, metrics_port = self.settings.host, self.settings.metrics_port
            if metrics_port:
                try:
                    self.metrics_port = self.metrics.start_http(host, metrics_port)
                except OSError as error:
                    raise FailedPrecondition(
                        f"cannot serve metrics on {host}:{metrics_port} ({error.strerror}); "
                        f"choose another port ({self.settings.env_prefix()}METRICS_PORT, 0 disables metrics)"
                    ) from error
            for hook in self.binding.on_start:
                await hook()
        except BaseException:
            self.metrics.stop_http()
            await server.stop(None)
            self._stopped.set()
            raise
        await self.health.set(self.binding.full_name, SERVING)
        logger.info(
            "serving %s on %s",
            self.binding.full_name,
            self.address,
            extra={
                "port": self.port,
                "metrics_port": self.metrics_port,
                "tls": bool(self.settings.tls_cert_file),
            },
        )
        return self.port

    def cut(self) -> None:
        """Cut a running drain short: calls still in flight are cancelled now."""
        self._cut.set()

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain and stop (see the module docstring); ``grace_s`` defaults to ``drain_grace_s``.

        Safe to call twice; the second call waits for the first to finish.
        """
        if self._server is None:
            return
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.settings.drain_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        self.gate.draining = True
        await self.health.set(self.binding.full_name, NOT_SERVING)
        logger.info("draining: %d call(s) in flight, up to %.1f s", self.gate.in_flight, grace)
        cut_waiter = asyncio.ensure_future(self._cut.wait())
        idle_waiter = asyncio.ensure_future(self.gate.wait_idle(grace))
        try:
            await asyncio.wait({cut_waiter, idle_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut_waiter.cancel()
            idle_waiter.cancel()
        if self.gate.in_flight:
            logger.warning("drain ended with %d call(s) still running: cancelling them", self.gate.in_flight)
            flush = 0.0
        else:
            flush = min(_FLUSH_S, max(deadline - time.monotonic(), 0.0))
        await self.health.enter_graceful_shutdown()
        await self._server.stop(flush)
        self.metrics.stop_http()
        for hook in self.binding.on_stop:
            try:
                await hook()
            except Exception:
                logger.exception("an on_stop hook failed")
        self._stopped.set()
        logger.info("stopped %s", self.binding.full_name)

    async def wait_stopped(self) -> None:
        """Return once ``stop`` has finished."""
        await self._stopped.wait()


def _read_pem(path: str, variable: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise FailedPrecondition(
            f"cannot read {variable}={path!r} ({error.strerror}); point it at a PEM file"
        ) from error


async def serve(settings: ServiceSettings, binding: ServiceBinding) -> None:
    """Run ``binding`` until SIGTERM or SIGINT, then drain and return (the process exits 0).

    A second signal during the drain cancels the calls still running.
    """
    configure_logging(settings)
    server = ServiceServer(settings, binding)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop_requested.is_set():
            logger.warning("second %s: cutting the drain short", signal.Signals(signum).name)
            server.cut()
            return
        logger.info("received %s: draining", signal.Signals(signum).name)
        stop_requested.set()

    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await server.start()
        await stop_requested.wait()
        await server.stop(settings.drain_grace_s)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
