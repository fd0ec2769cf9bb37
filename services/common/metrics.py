"""Prometheus metrics of one server: requests by method and code, latency, calls in flight.

Each server has its own ``CollectorRegistry`` so that tests (and a process hosting several
servers) never collide on metric names; ``/metrics`` is served over HTTP on the service's
``metrics_port`` by prometheus_client's small threaded server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from talklike.common.handlers import ScopeInterceptor

#: Latency buckets in seconds: sub-millisecond loopback calls up to multi-minute generations.
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


class ServerMetrics:
    """The metrics of one server and, once started, the HTTP endpoint that exposes them."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "talklike_grpc_requests",
            "gRPC calls finished, by method and status code.",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "talklike_grpc_request_duration_seconds",
            "Time from the start of a gRPC call to its status, by method.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "talklike_grpc_in_flight",
            "gRPC calls being served right now, by method.",
            ["service", "method"],
            registry=self.registry,
        )
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @asynccontextmanager
    async def scope(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        """Count the call in flight, then record its status code and duration."""
        in_flight = self.in_flight.labels(self.service, method)
        in_flight.inc()
        started = time.perf_counter()
        code = "OK"
        try:
            yield
        except grpc.aio.AbortError:
            code = _code_name(context.code())
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        except BaseException:
            code = "UNKNOWN"
            raise
        else:
            code = _code_name(context.code())
        finally:
            in_flight.dec()
            self.latency.labels(self.service, method).observe(time.perf_counter() - started)
            self.requests.labels(self.service, method, code).inc()

    def interceptor(self) -> ScopeInterceptor:
        """The interceptor that feeds these metrics from every call."""
        return ScopeInterceptor(self.scope)

    def start_http(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port``; returns the bound port (an OSError names a taken port)."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def stop_http(self) -> None:
        """Stop the HTTP endpoint (no-op when it was never started)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _code_name(code: grpc.StatusCode | None) -> str:
    """A status code's name; None (nothing set) means the call ended OK."""
    return "OK" if code is None else code.name
