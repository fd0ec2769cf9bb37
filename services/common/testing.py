"""Real servers on loopback ports for integration tests.

Every service's integration tests exercise the real runtime (interceptors, health, auth,
error mapping) instead of calling servicer methods directly, because that is what clients
get. Use::

    from talklike.common.testing import running_service

    async def test_generate(tmp_path):
        settings = GenerationSettings(home=tmp_path, port=0, metrics_port=0)
        async with running_service(create_service(settings), settings) as srv:
            stub = generation_pb2_grpc.GenerationServiceStub(srv.channel())
            reply = await stub.Generate(...)

``srv.address`` / ``srv.port`` is where it listens (port 0 in the settings picks a free one;
the default ``ServiceSettings()`` does), ``srv.channel()`` opens a ``grpc.aio`` channel that
carries the settings' auth token and trusts its TLS certificate, and ``srv.server`` is the
``ServiceServer`` (its ``health``, ``metrics``, ``gate``). Channels are closed and the server
is stopped (short drain) on exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from talklike.common.client import secure_channel_options, token_interceptors
from talklike.common.server import ServiceServer
from talklike.common.service import ServiceBinding
from talklike.common.settings import ServiceSettings

#: Name the test certificate must carry when TLS is on (loopback tests connect by IP).
TLS_TEST_SERVER_NAME = "localhost"


@dataclass
class RunningService:
    """A started server and the means to call it."""

    server: ServiceServer
    settings: ServiceSettings
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    @property
    def address(self) -> str:
        """``host:port`` to dial."""
        return self.server.address

    def channel(self, *, token: str | None = None) -> grpc.aio.Channel:
        """A new aio channel to the server; ``token`` overrides the settings' token ("" sends none)."""
        use_token = self.settings.auth_token if token is None else token
        interceptors = token_interceptors(use_token)
        if self.settings.tls_cert_file:
            credentials = grpc.ssl_channel_credentials(Path(self.settings.tls_cert_file).read_bytes())
            channel = grpc.aio.secure_channel(
                self.address,
                credentials,
                options=secure_channel_options(TLS_TEST_SERVER_NAME),
                interceptors=interceptors,
            )
        else:
            channel = grpc.aio.insecure_channel(self.address, interceptors=interceptors)
        self._channels.append(channel)
        return channel

    async def close_channels(self) -> None:
        """Close every channel opened through ``channel()``."""
        for channel in self._channels:
            await channel.close()
        self._channels.clear()


@asynccontextmanager
async def running_service(
    binding: ServiceBinding,
    settings: ServiceSettings | None = None,
    *,
    grace_s: float = 2.0,
) -> AsyncIterator[RunningService]:
    """Start ``binding`` on a loopback port (settings default: ``ServiceSettings()``, port 0)."""
    used = settings if settings is not None else ServiceSettings(port=0, metrics_port=0)
    server = ServiceServer(used, binding)
    await server.start()
    running = RunningService(server, used)
    try:
        yield running
    finally:
        await running.close_channels()
        await server.stop(grace_s)
