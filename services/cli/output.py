"""How every ``talklike`` command talks to a person: results, tables, progress, and errors.

Results go to stdout (``console``) so they can be piped; progress and errors go to stderr
(``err_console``). An error is one sentence saying what went wrong plus one saying how to
fix it, and a non-zero exit — never a traceback. ``rpc_errors`` turns a failed gRPC call
into such an error by status code, so each command does not have to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ContextDecorator
from types import TracebackType
from typing import Any, NoReturn

import grpc
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from talklike.common import errors

#: Results: what a command produces (stdout).
console = Console()
#: Progress, warnings and errors (stderr), so stdout stays clean for pipes.
err_console = Console(stderr=True)


def fail(message: str, fix: str = "", code: int = 1) -> NoReturn:
    """Print ``message`` (what went wrong) and ``fix`` (what to do) to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if fix:
        err_console.print(f"[bold]fix:[/] {escape(fix)}", highlight=False)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """A warning that does not stop the command."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def _trailing(error: grpc.RpcError) -> dict[str, str]:
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:
        return {}
    return {str(key): str(value) for key, value in metadata}


def explain_rpc_error(error: grpc.RpcError, service: str | None = None) -> tuple[str, str]:
    """``(message, fix)`` for a failed call, by status code; ``service`` names who was called."""
    from talklike.common.client import address_for, env_name

    code: grpc.StatusCode = error.code()
    details = str(error.details() or "").strip() or code.name.lower().replace("_", " ")
    who = f"the {service} service" if service else "the service"
    address = ""
    if service:
        try:
            address = address_for(service)
        except KeyError:
            address = ""
    at = f" at {address}" if address else ""
    address_var = env_name(service, "ADDRESS") if service else "TALKLIKE_<SERVICE>_ADDRESS"
    if code == grpc.StatusCode.UNAVAILABLE:
        if "shutting down" in details:
            return (
                f"{who}{at} is shutting down",
                "wait for it to restart (`talklike up`) and run the command again",
            )
        return (
            f"cannot reach {who}{at} ({details})",
            f"is it running? start it with `talklike up` (or point {address_var} at where it runs)",
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field = _trailing(error).get("talklike-field")
        return details, (f"correct `{field}` and run the command again" if field else "correct the input")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return (
            f"{who}{at} refused the call: {details}",
            "set TALKLIKE_AUTH_TOKEN to the token the services were started with",
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return details, "use a path inside the data home (TALKLIKE_HOME) or one the service may access"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"{who}{at} did not finish in time ({details})",
            "retry with a longer --timeout, or check the service's log in <home>/logs",
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return details, "check the name; the list commands show what exists"
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return details, "choose another name, or remove the existing one first"
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        # The services word these as "what is wrong; what to do" (a key to set, a port to
        # change, a job state): a canned second line would only repeat it less precisely.
        return details, ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"{who} is at its limit: {details}", "retry in a moment, or lower the request's size"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return (
            f"{who}{at} does not implement this call",
            f"check that {address_var} points at the right service and that it runs this talklike version",
        )
    if code == grpc.StatusCode.CANCELLED:
        return f"the call to {who} was cancelled ({details})", "run the command again"
    if code == grpc.StatusCode.INTERNAL:
        return (
            f"{who} failed: {details}",
            f"find the request id in the {service or 'service'} log under <home>/logs and report it",
        )
    return f"{who} answered {code.name}: {details}", "check the service's log in <home>/logs"


class rpc_errors(ContextDecorator):
    """Turn ``grpc.RpcError`` (and domain errors raised on the client side) into ``fail()``.

    Use as ``with rpc_errors("generation"): ...`` or as a decorator ``@rpc_errors("generation")``.
    """

    def __init__(self, service: str | None = None) -> None:
        self.service = service

    def __enter__(self) -> rpc_errors:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
            message, fix = explain_rpc_error(error, self.service)
            fail(message, fix)
        if isinstance(error, errors.TalklikeError):
            cause = error.__cause__  # a client's domain error: explain the call that failed
            if isinstance(cause, grpc.RpcError) and hasattr(cause, "code"):
                message, fix = explain_rpc_error(cause, self.service)
                fail(message, fix)
            fail(error.message, "")


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None, *, markup: bool = True
) -> Table:
    """A plain rich table with ``columns`` headers.

    String cells may use rich markup (``"[red]LOW[/]"``); pass ``markup=False`` when the cells
    are data that may contain brackets (file names, user text), or give such a cell as a
    ``rich.text.Text``. Other values are shown with ``str``; None as an empty cell.
    """
    result = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*(_cell(cell, markup) for cell in row))
    return result


def _cell(value: Any, markup: bool) -> Any:
    if value is None:
        return ""
    if isinstance(value, Text):
        return value
    return str(value) if markup else escape(str(value))


def progress(transient: bool = False) -> Progress:
    """The standard progress display: spinner, description, bar, done/total, elapsed, ETA (stderr).

    Not on a terminal (a log file, CI) the bars are not left behind: rich would write their last
    frame squeezed to 80 columns, which reads as noise; the commands print their results anyway.
    """
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient or not err_console.is_terminal,
    )


def follow_stream(events: Iterable[Any], service: str, *, transient: bool) -> Any:
    """Show a dataset stream's progress events as bars, one per stage; return its final summary."""
    summary = None
    with progress(transient=transient) as bar:
        tasks: dict[str, Any] = {}
        for event in events:
            if event.HasField("progress"):
                p = event.progress
                if p.stage not in tasks:
                    tasks[p.stage] = bar.add_task(p.stage, total=p.total or None)
                bar.update(tasks[p.stage], completed=p.done, total=p.total or None)
            else:
                summary = event.summary
    if summary is None:
        fail(f"the {service} service ended the stream without a summary", "run the command again")
    return summary


def iter_progress(items: Sequence[Any], description: str) -> Iterator[Any]:
    """Iterate ``items`` while showing the standard progress bar."""
    with progress() as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)
