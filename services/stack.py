"""The local stack without Docker: the five services as background processes under one data home.

``start`` launches each service (``python -m talklike.cli.main serve NAME`` with
``TALKLIKE_HOME`` set), waits until its readiness is SERVING, and records it in
``<home>/run/<name>.json`` (pid, process start time, address); its output goes to
``<home>/logs/<name>.log``. ``stop`` sends SIGTERM (the service drains), waits, and kills
what is left after the timeout. ``status`` reads the pid files and asks each service's
health. All three are idempotent: a service already running is not started twice, and a
pid file whose process is gone (or whose pid now belongs to another program) is removed.

This module is the domain side: no gRPC here apart from the health probe through
``talklike.common.client``, and errors are ``talklike.common.errors`` exceptions.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from talklike.common import registry
from talklike.common.client import UNREACHABLE, health_status_at
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.common.paths import atomic_write_text, ensure_home, open_private_append

#: How many log lines an error quotes when a service does not come up.
LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service of the stack and where it will listen."""

    name: str
    full_name: str
    host: str
    port: int
    metrics_port: int
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    #: The variable that sets the port, named in "port taken" errors.
    port_variable: str = ""
    #: Other ports the service listens on (an HTTP face...), as (variable, port).
    extra_ports: tuple[tuple[str, int], ...] = ()

    @property
    def address(self) -> str:
        """``host:port`` clients dial."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServiceState:
    """What ``status`` (and ``start``/``stop``) report for one service."""

    name: str
    address: str
    health: str
    pid: int | None = None
    uptime_s: float | None = None
    note: str = ""


@dataclass(frozen=True)
class _Record:
    """The contents of ``<home>/run/<name>.json``."""

    name: str
    pid: int
    create_time: float
    address: str
    full_name: str
    metrics_port: int
    started_at: float
    command: list[str]


def spec_for(name: str) -> ServiceSpec:
    """The spec of a registered service, with its address from its settings class (the environment).

    The services inherit this process's environment, so they read the same settings.
    Raises FailedPrecondition when the service's code is not installed.
    """
    entry = registry.get(name)
    try:
        settings_class = entry.settings_class()
    except ImportError as error:
        raise FailedPrecondition(
            f"the {name} service is not available in this installation ({error})"
        ) from error
    settings = settings_class()
    prefix = settings_class.env_prefix()
    extra_ports = tuple(
        (f"{prefix}{field_name.upper()}", int(getattr(settings, field_name)))
        for field_name in settings_class.model_fields
        if field_name.endswith("_port") and field_name != "port" and getattr(settings, field_name)
    )
    return ServiceSpec(
        name=name,
        full_name=entry.full_name,
        host=settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1",
        port=settings.port,
        metrics_port=settings.metrics_port,
        command=(sys.executable, "-m", "talklike.cli.main", "serve", name),
        port_variable=f"{prefix}PORT",
        extra_ports=extra_ports,
    )


def parse_only(only: str | None) -> list[str]:
    """The service names of ``--only a,b`` (all registered services when empty), in registry order."""
    if not only:
        return list(registry.SERVICES)
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    unknown = [name for name in wanted if name not in registry.SERVICES]
    if unknown:
        raise InvalidArgument(
            "only", f"unknown service(s) {', '.join(unknown)}; known: {', '.join(registry.SERVICES)}"
        )
    return [name for name in registry.SERVICES if name in wanted]


class Stack:
    """The processes of one data home."""

    def __init__(
        self, home: Path, specs: Sequence[ServiceSpec], env: Mapping[str, str] | None = None
    ) -> None:
        self.home = home
        self.specs = list(specs)
        self.env = dict(os.environ if env is None else env)
        self.run_dir = home / "run"
        self.logs_dir = home / "logs"

    def pid_file(self, name: str) -> Path:
        """Where the record of a running service is kept."""
        return self.run_dir / f"{name}.json"

    def log_file(self, name: str) -> Path:
        """Where a service's output goes."""
        return self.logs_dir / f"{name}.log"

    # ---- records -------------------------------------------------------------------------

    def _read_record(self, name: str) -> _Record | None:
        path = self.pid_file(name)
        try:
            return _Record(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            # A half-written or foreign file: treat as stale.
            path.unlink(missing_ok=True)
            return None

    def _live_record(self, name: str) -> _Record | None:
        """The record when its process still runs; a stale record is removed."""
        record = self._read_record(name)
        if record is None:
            return None
        if _is_running(record.pid, record.create_time):
            return record
        self.pid_file(name).unlink(missing_ok=True)
        return None

    # ---- up -------------------------------------------------------------------------------

    def start(
        self,
        timeout_s: float = 120.0,
        on_event: Callable[[str, str], None] | None = None,
    ) -> list[ServiceState]:
        """Start every service that is not running yet and wait until all are SERVING.

        If one fails to come up, the services this call started are stopped again and
        FailedPrecondition is raised with that service's log tail.
        """
        notify = on_event or (lambda _name, _what: None)
        ensure_home(self.home)
        to_start: list[ServiceSpec] = []
        for spec in self.specs:
            if self._live_record(spec.name) is not None:
                notify(spec.name, "already running")
                continue
            to_start.append(spec)
        self._check_ports(to_start)
        started: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for spec in to_start:
                started[spec.name] = self._launch(spec)
                notify(spec.name, f"started (pid {started[spec.name].pid})")
            deadline = time.monotonic() + timeout_s
            for spec in to_start:
                self._wait_serving(spec, started[spec.name], deadline, timeout_s)
                notify(spec.name, "SERVING")
        except BaseException:
            self._stop_records([name for name in started], timeout_s=10.0)
            raise
        return self.status()

    def _check_ports(self, specs: Iterable[ServiceSpec]) -> None:
        seen: dict[int, str] = {}
        for spec in specs:
            if not spec.port:
                raise FailedPrecondition(
                    f"{spec.name} has port 0, but the stack needs a fixed port to find it again; "
                    f"set {spec.port_variable or 'its port'} to a free port"
                )
            ports = [(spec.port, spec.port_variable or "port")]
            if spec.extra_ports:
                ports += [(port, variable) for variable, port in spec.extra_ports]
            else:
                ports.append((spec.metrics_port, "metrics port"))
            for port, what in ports:
                if not port:
                    continue
                if port in seen:
                    raise FailedPrecondition(
                        f"{spec.name} and {seen[port]} are both set to port {port}; give each its own"
                    )
                seen[port] = spec.name
                holder = port_holder(spec.host, port)
                if holder is not None:
                    raise FailedPrecondition(
                        f"port {port} ({spec.name} {what}) on {spec.host} is taken{holder}; "
                        f"stop that program or choose another port"
                        + (f" with {what}" if what.startswith("TALKLIKE_") else "")
                    )

    def _launch(self, spec: ServiceSpec) -> subprocess.Popen[bytes]:
        env = dict(self.env)
        env.update(spec.env)
        env["TALKLIKE_HOME"] = str(self.home)
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_path = self.log_file(spec.name)
        with open_private_append(log_path) as log:
            process = subprocess.Popen(
                list(spec.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own session: Ctrl-C in the terminal that ran `talklike up` does not reach it.
                start_new_session=True,
            )
        try:
            create_time = psutil.Process(process.pid).create_time()
        except psutil.Error:
            create_time = 0.0
        record = _Record(
            name=spec.name,
            pid=process.pid,
            create_time=create_time,
            address=spec.address,
            full_name=spec.full_name,
            metrics_port=spec.metrics_port,
            started_at=time.time(),
            command=list(spec.command),
        )
        atomic_write_text(self.pid_file(spec.name), json.dumps(asdict(record), indent=2) + "\n")
        return process

    def _wait_serving(
        self, spec: ServiceSpec, process: subprocess.Popen[bytes], deadline: float, timeout_s: float
    ) -> None:
        last = UNREACHABLE
        while True:
            exit_code = process.poll()
            if exit_code is not None:
                raise FailedPrecondition(
                    f"{spec.name} exited with code {exit_code} before it was ready; "
                    f"its log ({self.log_file(spec.name)}) ends with:\n{self.log_tail(spec.name)}"
                )
            remaining = deadline - time.monotonic()
            last = health_status_at(spec.address, spec.full_name, timeout_s=min(1.0, max(remaining, 0.1)))
            if last == "SERVING":
                return
            if remaining <= 0:
                raise FailedPrecondition(
                    f"{spec.name} was not ready on {spec.address} within {timeout_s:.0f} s (health: {last}); "
                    f"its log ({self.log_file(spec.name)}) ends with:\n{self.log_tail(spec.name)}"
                )
            time.sleep(0.1)

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of a service's log, JSON entries shown as ``LEVEL message``."""
        try:
            text = self.log_file(name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        rendered: list[str] = []
        for raw in text.splitlines():
            rendered.extend(_render_log_line(raw))
        return "\n".join(rendered[-lines:]) or "(empty log)"

    # ---- down -----------------------------------------------------------------------------

    def stop(self, timeout_s: float = 45.0) -> list[ServiceState]:
        """SIGTERM every running service of the specs, wait up to ``timeout_s``, then SIGKILL the rest."""
        return self._stop_records([spec.name for spec in self.specs], timeout_s)

    def _stop_records(self, names: Sequence[str], timeout_s: float) -> list[ServiceState]:
        records: dict[str, _Record] = {}
        states: list[ServiceState] = []
        for name in names:
            record = self._live_record(name)
            if record is None:
                states.append(ServiceState(name, "", "stopped", note="was not running"))
                continue
            records[name] = record
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        pending = dict(records)
        while pending and time.monotonic() < deadline:
            for name, record in list(pending.items()):
                if not _is_running(record.pid, record.create_time):
                    del pending[name]
            if pending:
                time.sleep(0.05)
        for name, record in records.items():
            note = "stopped"
            if name in pending:
                _kill_group(record.pid)
                _wait_gone(record.pid, record.create_time, 5.0)
                note = f"killed after {timeout_s:.0f} s"
            self.pid_file(name).unlink(missing_ok=True)
            states.append(ServiceState(name, record.address, "stopped", pid=record.pid, note=note))
        order = {name: index for index, name in enumerate(names)}
        return sorted(states, key=lambda state: order[state.name])

    # ---- status ---------------------------------------------------------------------------

    def status(self, probe_timeout_s: float = 1.0) -> list[ServiceState]:
        """One state per spec: health from the service itself, pid and uptime from the pid file."""
        states = []
        for spec in self.specs:
            record = self._live_record(spec.name)
            if record is None:
                states.append(ServiceState(spec.name, spec.address, "stopped"))
                continue
            health = health_status_at(record.address, record.full_name, timeout_s=probe_timeout_s)
            states.append(
                ServiceState(
                    spec.name,
                    record.address,
                    health,
                    pid=record.pid,
                    uptime_s=max(time.time() - record.started_at, 0.0),
                )
            )
        return states


def port_holder(host: str, port: int) -> str | None:
    """None when ``host:port`` can be listened on; else a note naming who holds it (when known)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As a server does: a port with only TIME_WAIT connections left is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                return f" ({error.strerror})"
        else:
            return None
    with contextlib.suppress(psutil.Error, OSError):
        for connection in psutil.net_connections(kind="tcp"):
            local = connection.laddr
            listening = connection.status == psutil.CONN_LISTEN and isinstance(local, tuple) and local
            if listening and getattr(local, "port", None) == port and connection.pid:
                return f" by {psutil.Process(connection.pid).name()} (pid {connection.pid})"
    return ""


def _is_running(pid: int, create_time: float) -> bool:
    """True when ``pid`` is alive and is the process that was started (not a reused pid, not a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own child that exited (tests run the stack in-process).
        os.waitpid(pid, os.WNOHANG)
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return not create_time or abs(process.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


def _kill_group(pid: int) -> None:
    """SIGKILL the service and anything it started (its own session/process group)."""
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_gone(pid: int, create_time: float, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _is_running(pid, create_time) and time.monotonic() < deadline:
        time.sleep(0.05)


def _render_log_line(raw: str) -> list[str]:
    try:
        entry: Any = json.loads(raw)
    except ValueError:
        return [raw]
    if not isinstance(entry, dict) or "message" not in entry:
        return [raw]
    lines = [f"{entry.get('level', '')} {entry['message']}".strip()]
    if entry.get("traceback"):
        lines.extend(str(entry["traceback"]).splitlines())
    return lines


def format_uptime(seconds: float | None) -> str:
    """``1h02m``, ``3m05s`` or ``12s``; empty for None."""
    if seconds is None:
        return ""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
