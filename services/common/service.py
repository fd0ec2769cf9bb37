"""What a service hands to the shared server runtime.

A service package provides ``create_service(settings) -> ServiceBinding`` in its
``servicer`` module. The runtime owns everything else: the server, health, reflection,
auth, metrics, error mapping, logging and drain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from prometheus_client.registry import Collector


@dataclass
class ServiceBinding:
    """A servicer ready to be added to a ``grpc.aio.Server``.

    ``register`` adds the servicer (``add_XServiceServicer_to_server``). ``on_start`` hooks
    run after the server has bound its port and before readiness is SERVING (load a model,
    start a worker); ``on_stop`` hooks run after the in-flight calls have drained.
    ``collectors`` are the service's own Prometheus metrics (created with ``registry=None``),
    registered in the server's registry so they appear on its ``/metrics``. A service whose
    requests are small sets ``max_request_bytes``, so that a 10 MB request costs it nothing.
    """

    full_name: str
    register: Callable[[grpc.aio.Server], None]
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    collectors: list[Collector] = field(default_factory=list)
    #: Largest request the service accepts, in bytes (0 = the settings' max_message_bytes); gRPC
    #: refuses a bigger one with RESOURCE_EXHAUSTED before reading it into a message.
    max_request_bytes: int = 0
