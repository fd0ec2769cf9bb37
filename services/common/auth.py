"""Optional bearer-token auth for every RPC except health and reflection.

One shared token (``TALKLIKE_AUTH_TOKEN``) is enough for a private stack: the services and
the CLI read the same variable. Probes (health) and tooling (reflection) stay open so that
orchestrators and ``grpcurl list`` work without the secret. The token is compared in
constant time so that response timing does not leak it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from talklike.common.handlers import CallScope, ScopeInterceptor, is_infrastructure

logger = logging.getLogger(__name__)

#: Metadata key of the credential (lower case, as gRPC metadata keys are).
AUTH_METADATA_KEY = "authorization"
#: The scheme in ``authorization: Bearer <token>``.
BEARER_PREFIX = "Bearer "

UNAUTHENTICATED_MESSAGE = (
    "missing or wrong bearer token; set TALKLIKE_AUTH_TOKEN to the token the server was started with"
)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata a client sends to authenticate with ``token`` (empty when there is none)."""
    return ((AUTH_METADATA_KEY, f"{BEARER_PREFIX}{token}"),) if token else ()


def token_matches(metadata: Any, token: str) -> bool:
    """True when ``metadata`` carries ``authorization: Bearer <token>`` (constant-time compare)."""
    expected = f"{BEARER_PREFIX}{token}".encode()
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY:
            presented = value.encode() if isinstance(value, str) else bytes(value)
            if hmac.compare_digest(presented, expected):
                return True
    return False


def auth_scope(token: str) -> CallScope:
    """A call scope that aborts with UNAUTHENTICATED unless the call carries ``token``."""

    @asynccontextmanager
    async def scope(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        if not token_matches(context.invocation_metadata(), token):
            logger.info("rejected unauthenticated call", extra={"rpc_method": method, "peer": context.peer()})
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        yield

    return scope


class AuthInterceptor(ScopeInterceptor):
    """Requires the bearer token on every method but health and reflection."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("AuthInterceptor needs a non-empty token; leave it out to disable auth")
        super().__init__(auth_scope(token), applies_to=lambda method: not is_infrastructure(method))
