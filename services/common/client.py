"""Channels to talklike services by name, with the stack's auth token and TLS.

The CLI, the services calling each other, and other tools all find a service the same way:
``TALKLIKE_<NAME>_ADDRESS`` (``disk-agent`` → ``TALKLIKE_DISK_AGENT_ADDRESS``) when set,
else ``127.0.0.1:<port>`` where the port is ``TALKLIKE_<NAME>_PORT`` (what ``talklike up``
starts the service on) or the registry default. ``TALKLIKE_AUTH_TOKEN`` is sent as a bearer
token; ``TALKLIKE_TLS_CA_FILE`` switches to TLS trusting that CA (and
``TALKLIKE_TLS_SERVER_NAME`` overrides the name checked in the server's certificate).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from talklike.common import errors, registry
from talklike.common.auth import bearer_metadata
from talklike.common.error_mapping import FIELD_METADATA_KEY, STATUS_BY_ERROR
from talklike.common.errors import DeadlineExceeded, FailedPrecondition, Unavailable

TOKEN_ENV = "TALKLIKE_AUTH_TOKEN"
CA_FILE_ENV = "TALKLIKE_TLS_CA_FILE"
SERVER_NAME_ENV = "TALKLIKE_TLS_SERVER_NAME"


def env_name(name: str, suffix: str) -> str:
    """``TALKLIKE_<NAME>_<SUFFIX>`` for a service name (``-`` becomes ``_``)."""
    return f"TALKLIKE_{name.replace('-', '_').upper()}_{suffix}"


def address_for(name: str, env: Mapping[str, str] | None = None) -> str:
    """Where service ``name`` listens, from the environment or the registry default."""
    environ = os.environ if env is None else env
    explicit = environ.get(env_name(name, "ADDRESS"), "").strip()
    if explicit:
        return explicit
    port = environ.get(env_name(name, "PORT"), "").strip() or str(registry.get(name).default_port)
    return f"127.0.0.1:{port}"


#: The next step of a client interceptor chain.
_Next = Callable[..., Any]


def _add_metadata(details: Any, extra: tuple[tuple[str, str], ...]) -> Any:
    metadata = list(details.metadata or ())
    metadata.extend(extra)
    return details._replace(metadata=metadata)


class _AioTokenBase:
    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)


# grpc.aio files an interceptor under the first call shape it implements only (an if/elif chain),
# so each shape needs its own class.
class _AioUnaryUnaryToken(_AioTokenBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: _Next, details: Any, request: Any) -> Any:
        return await continuation(_add_metadata(details, self._metadata), request)


class _AioUnaryStreamToken(_AioTokenBase, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: _Next, details: Any, request: Any) -> Any:
        return await continuation(_add_metadata(details, self._metadata), request)


class _AioStreamUnaryToken(_AioTokenBase, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: _Next, details: Any, requests: Any) -> Any:
        return await continuation(_add_metadata(details, self._metadata), requests)


class _AioStreamStreamToken(_AioTokenBase, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: _Next, details: Any, requests: Any) -> Any:
        return await continuation(_add_metadata(details, self._metadata), requests)


class _SyncTokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call of a sync channel."""

    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)

    def intercept_unary_unary(self, continuation: _Next, details: Any, request: Any) -> Any:
        return continuation(_add_metadata(details, self._metadata), request)

    def intercept_unary_stream(self, continuation: _Next, details: Any, request: Any) -> Any:
        return continuation(_add_metadata(details, self._metadata), request)

    def intercept_stream_unary(self, continuation: _Next, details: Any, requests: Any) -> Any:
        return continuation(_add_metadata(details, self._metadata), requests)

    def intercept_stream_stream(self, continuation: _Next, details: Any, requests: Any) -> Any:
        return continuation(_add_metadata(details, self._metadata), requests)


def token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """The aio client interceptors that send ``token`` on every call shape (none when it is empty)."""
    if not token:
        return []
    return [
        _AioUnaryUnaryToken(token),
        _AioUnaryStreamToken(token),
        _AioStreamUnaryToken(token),
        _AioStreamStreamToken(token),
    ]


def secure_channel_options(server_name: str = "") -> list[tuple[str, Any]]:
    """Channel options for TLS: the certificate name to check when dialling by IP."""
    return [("grpc.ssl_target_name_override", server_name)] if server_name else []


def _channel_settings(max_message_bytes: int) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    ca_file = os.environ.get(CA_FILE_ENV, "").strip()
    if not ca_file:
        return None, options
    try:
        root = Path(ca_file).expanduser().read_bytes()
    except OSError as error:
        raise FailedPrecondition(
            f"cannot read {CA_FILE_ENV}={ca_file!r} ({error.strerror}); point it at the CA's PEM file"
        ) from error
    options.extend(secure_channel_options(os.environ.get(SERVER_NAME_ENV, "").strip()))
    return grpc.ssl_channel_credentials(root_certificates=root), options


#: Default for channels: the servers' default limit, so large datasets pass both ways.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def connect(name: str, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.Channel:
    """A sync channel to service ``name`` with the token and TLS from the environment."""
    credentials, options = _channel_settings(max_message_bytes)
    address = address_for(name)
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, credentials, options=options)
    token = os.environ.get(TOKEN_ENV, "")
    return grpc.intercept_channel(channel, _SyncTokenInterceptor(token)) if token else channel


def aio_connect(name: str, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.aio.Channel:
    """An aio channel to service ``name`` with the token and TLS from the environment."""
    credentials, options = _channel_settings(max_message_bytes)
    address = address_for(name)
    interceptors = token_interceptors(os.environ.get(TOKEN_ENV, ""))
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)


#: ``health_status`` when nothing answers at the address.
UNREACHABLE = "UNREACHABLE"


def health_status_at(address: str, service: str, *, timeout_s: float = 1.0) -> str:
    """The health of ``service`` (a health key: a full service name, or ``""`` for liveness) at ``address``.

    One word: SERVING, NOT_SERVING, SERVICE_UNKNOWN (the server does not know that key) or
    UNREACHABLE (nothing answers there). Uses TLS and the token from the environment like ``connect``.
    """
    credentials, options = _channel_settings(DEFAULT_MAX_MESSAGE_BYTES)
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, credentials, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return UNREACHABLE
            raise
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def health_status(name: str, *, service: str | None = None, timeout_s: float = 1.0) -> str:
    """The readiness of service ``name`` at ``address_for(name)`` as a word (see ``health_status_at``).

    ``service`` is the health key to ask (default: the service's full name, i.e. readiness;
    ``""`` asks liveness).
    """
    key = registry.get(name).full_name if service is None else service
    return health_status_at(address_for(name), key, timeout_s=timeout_s)


def wait_ready(
    name: str,
    timeout_s: float,
    *,
    alive: Callable[[], bool] | None = None,
    poll_s: float = 0.1,
) -> None:
    """Block until service ``name`` reports SERVING on readiness.

    Raises DeadlineExceeded after ``timeout_s``; ``alive`` (e.g. "is the process still
    running") is checked between probes and Unavailable is raised as soon as it says no.
    """
    deadline = time.monotonic() + timeout_s
    last = UNREACHABLE
    while True:
        if alive is not None and not alive():
            raise Unavailable(f"{name} exited before it was ready (last health: {last})")
        last = health_status(name, timeout_s=min(1.0, max(deadline - time.monotonic(), 0.05)))
        if last == "SERVING":
            return
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(
                f"{name} at {address_for(name)} was not ready within {timeout_s:.0f} s (health: {last})"
            )
        time.sleep(poll_s)


T = TypeVar("T")


class ServiceClient:
    """Base of the per-service clients: one sync channel (address, token and TLS from the
    environment unless given), closed by ``close()`` or at the end of a ``with`` block."""

    #: The service's registry name.
    service: str

    def __init__(self, channel: grpc.Channel | None = None) -> None:
        self.channel = channel or connect(self.service)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class RemoteInternal(errors.TalklikeError):
    """Another service failed in a way its error table does not name (INTERNAL, UNKNOWN...)."""


def domain_error(error: grpc.RpcError) -> errors.TalklikeError:
    """The domain exception a service's status stands for: the error table read backwards.

    Client modules raise these, so that code calling another service catches
    ``talklike.common.errors`` exceptions and never sees gRPC; the message is the remote's own.
    """
    code = error.code()
    details = error.details() or code.name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        trailing = dict(error.trailing_metadata() or ())
        field = str(trailing.get(FIELD_METADATA_KEY, ""))
        if not field and ": " in details:
            field = details.split(": ", 1)[0]
        return errors.InvalidArgument(field, details.removeprefix(f"{field}: "))
    for error_class, status in STATUS_BY_ERROR:
        if status == code:
            remote = error_class.__new__(error_class)
            errors.TalklikeError.__init__(remote, details)
            return remote
    return RemoteInternal(f"{code.name}: {details}")


@contextlib.contextmanager
def remote_errors() -> Iterator[None]:
    """Inside: a failed call raises its domain exception (``domain_error``) instead of grpc.RpcError."""
    try:
        yield
    except grpc.RpcError as error:
        raise domain_error(error) from error


def each(stream: Iterable[T]) -> Iterator[T]:
    """The messages of a server stream, a failure mid-stream raised as its domain exception."""
    with remote_errors():
        yield from stream


#: ``on_progress(done, total, stage)`` of a long RPC's progress events.
ProgressCallback = Callable[[int, int, str], None]


def final_summary(stream: Iterable[Any], on_progress: ProgressCallback | None = None) -> Any:
    """The ``summary`` of a progress stream (``oneof event {progress; summary}``), progress shown on the way.

    Unavailable when the stream ends without one; a failed call raises its domain exception.
    """
    summary = None
    for message in each(stream):
        if message.HasField("progress"):
            if on_progress is not None:
                p = message.progress
                on_progress(int(p.done), int(p.total), p.stage)
        else:
            summary = message.summary
    if summary is None:
        raise Unavailable("the service closed the stream without a summary")
    return summary
