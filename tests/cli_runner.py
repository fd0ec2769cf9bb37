"""Running the ``talklike`` CLI in tests as a person would, against a real service on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from click.testing import Result
from talklike.cli.main import app
from talklike.common.client import env_name
from talklike.common.service import ServiceBinding
from talklike.common.settings import ServiceSettings
from talklike.common.testing import running_service
from typer.testing import CliRunner


def cli_environment(home: Path, service: str, address: str) -> dict[str, str]:
    """The environment of a CLI run: the data home, where ``service`` listens, a wide plain terminal."""
    return {
        "TALKLIKE_HOME": str(home),
        env_name(service, "ADDRESS"): address,
        "COLUMNS": "200",
        "TERM": "dumb",
    }


@asynccontextmanager
async def serving(
    binding: ServiceBinding, settings: ServiceSettings, service: str
) -> AsyncIterator[dict[str, str]]:
    """Start ``binding`` on loopback; yields the CLI environment that reaches it."""
    async with running_service(binding, settings) as srv:
        yield cli_environment(settings.home, service, srv.address)


async def talklike(env: dict[str, str], *args: str) -> Result:
    """``talklike ARGS`` with ``env``; run off the event loop, which serves the CLI's blocking calls."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
