#!/usr/bin/env python3
"""Container health check: is the talklike service in this container ready?

Docker's HEALTHCHECK (and so docker-compose's ``depends_on: service_healthy``) runs a
command inside the container; Kubernetes asks gRPC health natively and does not need this.
One image runs any of the five services, so the check finds out which one it is guarding
instead of being told per service: the service name and an explicit ``--port`` are read from
the command line of PID 1 (``talklike serve NAME [--port N]``, also under ``docker-init``),
the port otherwise from ``TALKLIKE_<SERVICE>_PORT`` or the registry default — the same order
the service itself uses. It asks ``grpc.health.v1`` for readiness (the full service name),
so a draining or still-loading service counts as not healthy, and exits 0 only on SERVING.

Usage: ``talklike-healthcheck [NAME]`` (NAME overrides what PID 1 says).
TLS: when the service speaks TLS, set ``TALKLIKE_TLS_CA_FILE`` (and
``TALKLIKE_TLS_SERVER_NAME`` when the certificate does not name 127.0.0.1).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

HEALTHY, UNHEALTHY = 0, 1


def served_by(argv: Sequence[str]) -> tuple[str | None, int | None]:
    """``(service name, --port value)`` from a ``talklike serve NAME ...`` command line."""
    name: str | None = None
    port: int | None = None
    for index, arg in enumerate(argv):
        if name is None and arg == "serve" and index + 1 < len(argv):
            name = argv[index + 1]
        elif arg == "--port" and index + 1 < len(argv) and argv[index + 1].isdigit():
            port = int(argv[index + 1])
        elif arg.startswith("--port=") and arg.removeprefix("--port=").isdigit():
            port = int(arg.removeprefix("--port="))
    return name, port


def pid1_argv(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    """The command line of the container's main process (empty when unreadable)."""
    try:
        raw = proc.read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def target(argv: Sequence[str], pid1: Sequence[str], env: Mapping[str, str]) -> tuple[str, str, str]:
    """``(service name, address, readiness key)`` to probe; raises LookupError when it cannot tell."""
    from talklike.common import registry

    name, port = served_by(pid1)
    if argv:
        name = argv[0]
    if name is None:
        raise LookupError(
            "PID 1 is not `talklike serve NAME`; pass the service name: talklike-healthcheck NAME"
        )
    entry = registry.get(name)  # KeyError names the known services
    variable = f"TALKLIKE_{name.replace('-', '_').upper()}_PORT"
    if port is None:
        port = int(env.get(variable, "").strip() or entry.default_port)
    return name, f"127.0.0.1:{port}", entry.full_name


def main(argv: Sequence[str] | None = None) -> int:
    """Probe readiness once; print one line; 0 when SERVING."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        name, address, key = target(args, pid1_argv(), os.environ)
    except (LookupError, ValueError) as error:
        print(f"talklike-healthcheck: {error}", file=sys.stderr)
        return UNHEALTHY
    from talklike.common.client import health_status_at

    try:
        status = health_status_at(address, key, timeout_s=3.0)
    except Exception as error:  # any RPC failure means "not healthy", said in one line
        print(f"{name} at {address}: health check failed ({error})", file=sys.stderr)
        return UNHEALTHY
    print(f"{name} at {address}: {status}")
    return HEALTHY if status == "SERVING" else UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
