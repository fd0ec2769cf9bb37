"""``talklike serve NAME``, ``up``, ``down`` and ``status``: running the services.

``serve`` has one sub-command per registered service whose options are generated from the
service's settings class, so ``talklike serve generation --help`` lists every setting with
its environment variable and default and can never drift from what the service reads. An
option given on the command line wins over the environment. ``up``/``down``/``status``
manage the local stack of background processes (``talklike.stack``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pydantic
import typer
from pydantic.fields import FieldInfo
from rich.markup import escape
from rich.text import Text
from talklike.cli.output import console, err_console, fail, table
from talklike.common import registry
from talklike.common.errors import InvalidArgument, TalklikeError
from talklike.common.settings import ServiceSettings

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Data home (default: TALKLIKE_HOME, else ./var).", show_default=False),
]
OnlyOption = Annotated[
    str | None,
    typer.Option("--only", help="Comma-separated services (default: all five), e.g. generation,inference."),
]


def env_variable(settings_class: type[ServiceSettings], name: str, info: FieldInfo) -> str:
    """The environment variable a settings field is read from."""
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    return f"{settings_class.env_prefix()}{name.upper()}"


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _option_for(
    settings_class: type[ServiceSettings], name: str, info: FieldInfo
) -> tuple[Any, typer.models.OptionInfo, bool]:
    """``(python type, typer option, parse_json)`` for one settings field."""
    annotation = _unwrap_optional(info.annotation)
    variable = env_variable(settings_class, name, info)
    help_text = f"{info.description or ''} [env: {variable}]".strip()
    shown: str
    if name == "home":
        shown = "TALKLIKE_HOME, else ./var"
    elif info.default_factory is not None:
        shown = json.dumps(info.default_factory(), default=str)  # type: ignore[call-arg]
    elif info.default in ("", None):
        shown = "none"
    else:
        shown = str(info.default)
    flag = "--" + name.replace("_", "-")
    parse_json = False
    python_type: Any
    if annotation in (bool, int, float, str, Path) or typing.get_origin(annotation) is typing.Literal:
        # typer turns a Literal into a choice of its values.
        python_type = annotation
    else:
        python_type = str
        parse_json = annotation not in (str,) and typing.get_origin(annotation) in (list, dict, tuple, set)
        if parse_json:
            help_text += " (JSON)"
    # The help is rich markup: "[env: X]" would be read as a tag and vanish.
    help_text = escape(help_text)
    if python_type is bool:
        option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text, show_default=shown)
    else:
        option = typer.Option(None, flag, help=help_text, show_default=shown)
    return python_type, option, parse_json


def build_settings(settings_class: type[ServiceSettings], given: dict[str, Any]) -> ServiceSettings:
    """Settings from the environment with ``given`` (command-line values) on top; fail() on bad values."""
    try:
        return settings_class(**given)
    except pydantic.ValidationError as error:
        problem = error.errors()[0]
        field_name = str(problem["loc"][0]) if problem["loc"] else ""
        info = settings_class.model_fields.get(field_name)
        variable = env_variable(settings_class, field_name, info) if info is not None else field_name
        fail(
            f"invalid setting {field_name} ({variable}): {problem['msg']}",
            f"correct --{field_name.replace('_', '-')} or {variable}",
        )


def _run_service(name: str, settings: ServiceSettings) -> None:
    from talklike.common.paths import PRIVATE_UMASK, ensure_home
    from talklike.common.server import serve

    entry = registry.get(name)
    os.umask(PRIVATE_UMASK)  # before anything is written: jobs.db, datasets, adapters are 0600 / 0700
    ensure_home(settings.home)

    async def main() -> None:
        binding = entry.factory()(settings)
        await serve(settings, binding)

    try:
        asyncio.run(main())
    except TalklikeError as error:
        fail(error.message, f"see `talklike serve {name} --help` for the settings")


def _serve_command(name: str) -> Callable[..., None]:
    """The ``talklike serve NAME`` command, its options generated from the settings class."""
    entry = registry.get(name)
    try:
        settings_class = entry.settings_class()
    except ImportError as error:
        missing = str(error)

        def unavailable() -> None:
            fail(
                f"the {name} service is not available in this installation ({missing})",
                "install talklike with all its parts (`make install`)",
            )

        unavailable.__doc__ = f"Run the {name} service ({entry.full_name}) — not installed here."
        return unavailable

    parameters = []
    json_fields: set[str] = set()
    for field_name, info in settings_class.model_fields.items():
        python_type, option, parse_json = _option_for(settings_class, field_name, info)
        if parse_json:
            json_fields.add(field_name)
        parameters.append(
            inspect.Parameter(
                field_name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=python_type | None
            )
        )

    def command(**options: Any) -> None:
        given: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key in json_fields:
                try:
                    value = json.loads(value)
                except ValueError:
                    fail(f"--{key.replace('_', '-')} must be JSON", 'quote it, e.g. \'["a", "b"]\'')
            given[key] = value
        _run_service(name, build_settings(settings_class, given))

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = (
        f"Run the {name} service ({entry.full_name}) until SIGTERM/SIGINT, then drain and exit 0.\n\n"
        f"Every option can also be set by the environment variable shown; an option wins over it."
    )
    return command


def up(
    home: HomeOption = None,
    only: OnlyOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each service may take to be ready.")
    ] = 120.0,
) -> None:
    """Start the services in the background and wait until each is SERVING (pids and logs under the home)."""
    stack = _stack(home, only)
    try:
        states = stack.start(timeout_s=timeout, on_event=_print_event)
    except TalklikeError as error:
        fail(error.message, "fix what the log says, then run `talklike up` again")
    _print_states(states)
    console.print(f"logs: {stack.logs_dir}", soft_wrap=True, highlight=False)
    console.print(f"stop: talklike down --home {stack.home}", soft_wrap=True, highlight=False)


def down(
    home: HomeOption = None,
    only: OnlyOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for a graceful drain before SIGKILL.")
    ] = 45.0,
) -> None:
    """Stop the services gracefully (SIGTERM: they drain in-flight calls), SIGKILL after the timeout."""
    stack = _stack(home, only, need_specs=False)
    states = stack.stop(timeout_s=timeout)
    rows = [(s.name, s.pid or "", s.note) for s in states]
    console.print(table(["service", "pid", "result"], rows, markup=False))


def status(home: HomeOption = None, only: OnlyOption = None) -> None:
    """Show each service's address, readiness, pid and uptime; exit 1 unless every one is SERVING.

    The exit status lets scripts and probes wait on `talklike status` alone.
    """
    stack = _stack(home, only, need_specs=False)
    states = stack.status()
    _print_states(states)
    down = [s.name for s in states if s.health != "SERVING"]
    if down:
        err_console.print(
            f"not serving: {', '.join(down)}; start them with `talklike up` "
            f"(their logs are in {stack.logs_dir})",
            highlight=False,
        )
        raise typer.Exit(1)


def _print_event(name: str, what: str) -> None:
    """Progress of ``up``, one line per service and step (stderr)."""
    err_console.print(f"{name}: {what}", highlight=False)


def _print_states(states: list[Any]) -> None:
    from talklike.stack import format_uptime

    console.print(
        table(
            ["service", "address", "readiness", "pid", "uptime"],
            [
                (s.name, s.address, _health_text(s.health), s.pid or "", format_uptime(s.uptime_s))
                for s in states
            ],
            markup=False,
        )
    )


def _health_text(health: str) -> Text:
    """A readiness word, green when SERVING, dim when stopped, red otherwise."""
    style = {"SERVING": "green", "stopped": "dim"}.get(health, "red")
    return Text(health, style=style)


def _stack(home: Path | None, only: str | None, *, need_specs: bool = True) -> Any:
    """The stack of ``home`` for the ``--only`` services; fail() with the fix on bad input."""
    from talklike.common.paths import data_home
    from talklike.stack import ServiceSpec, Stack, parse_only, spec_for

    try:
        names = parse_only(only)
        specs = []
        for name in names:
            try:
                specs.append(spec_for(name))
            except TalklikeError:
                if need_specs:
                    raise
                # down/status work from the pid files even when a service's code is missing.
                entry = registry.get(name)
                port = entry.default_port
                specs.append(ServiceSpec(name, entry.full_name, "127.0.0.1", port, 0, ()))
    except InvalidArgument as error:
        fail(error.message, "use --only with names from: " + ", ".join(registry.SERVICES))
    except TalklikeError as error:
        fail(
            error.message,
            "install talklike with all its parts (`make install`), or leave that service out with --only",
        )
    return Stack(data_home(home), specs)


def build_serve_app() -> typer.Typer:
    """The ``serve`` group: one sub-command per service in the registry."""
    serve_app = typer.Typer(
        name="serve",
        help="Run one service in the foreground (what `talklike up` starts, and what containers run).",
        no_args_is_help=True,
        rich_markup_mode="rich",
    )
    for name in registry.SERVICES:
        short_help = f"Run the {name} service ({registry.get(name).full_name})."
        serve_app.command(name, short_help=short_help)(_serve_command(name))
    return serve_app


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``up``, ``down`` and ``status`` to the ``talklike`` command."""
    app.add_typer(build_serve_app(), name="serve")
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
