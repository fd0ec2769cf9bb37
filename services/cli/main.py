"""Entry point of the ``talklike`` command.

Each area registers its commands from its own module (``register(app)``), so this file
only lists them; modules import no heavy engine at import time, to keep ``--help`` fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="talklike",
    help="Teach a language model to talk like a persona, and prove it.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

#: Modules under talklike.cli that add commands; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "stack",
    "disk",
    "generation",
    "moderation",
    "training",
    "inference",
    "evaluation",
    "pipeline",
)

for _module in COMMAND_MODULES:
    importlib.import_module(f"talklike.cli.{_module}").register(app)


if __name__ == "__main__":
    app()
