"""``talklike serve NAME`` generated from a settings class, and the stack commands' input errors.

The five real services are registered by their own packages; here a ``sample`` entry in the
registry (the sample service and its ``SampleSettings``) shows that the generated command
lists every setting with its variable and default, validates values, and really serves.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from talklike.cli.stack import build_serve_app, register
from talklike.common import registry
from talklike_sample_service import FULL_NAME
from typer.testing import CliRunner

HERE = Path(__file__).parent
SAMPLE_ENTRY = registry.ServiceEntry(
    "sample",
    FULL_NAME,
    0,
    0,
    "talklike_sample_service:SampleSettings",
    "talklike_sample_service:create_service",
)


@pytest.fixture
def sample_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry with only the sample service in it."""
    monkeypatch.setattr(registry, "SERVICES", {"sample": SAMPLE_ENTRY})


def run_cli(args: list[str]) -> tuple[int, str]:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "TERM": "dumb"})
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.usefixtures("sample_registry")
def test_serve_help_lists_every_setting_with_variable_and_default() -> None:
    code, text = run_cli(["serve", "sample", "--help"])
    assert code == 0, text
    for variable in (
        "TALKLIKE_HOME",
        "TALKLIKE_AUTH_TOKEN",
        "TALKLIKE_TLS_CERT_FILE",
        "TALKLIKE_TLS_KEY_FILE",
        "TALKLIKE_LOG_LEVEL",
        "TALKLIKE_LOG_FORMAT",
        "TALKLIKE_SAMPLE_HOST",
        "TALKLIKE_SAMPLE_PORT",
        "TALKLIKE_SAMPLE_METRICS_PORT",
        "TALKLIKE_SAMPLE_DRAIN_GRACE_S",
        "TALKLIKE_SAMPLE_MAX_MESSAGE_BYTES",
        "TALKLIKE_SAMPLE_GREETING",
        "TALKLIKE_SAMPLE_TAGS",
        "TALKLIKE_SAMPLE_VERBOSE",
    ):
        assert f"[env: {variable}]" in text, variable
    assert "--greeting" in text and "What the sample says." in text and "[default: (hello)]" in text
    assert "--verbose" in text and "--no-verbose" in text
    assert "[default: (30.0)]" in text  # drain grace
    assert "(JSON) [default: ([])]" in text
    assert "DEBUG|INFO|WARNING|ERROR" in text


@pytest.mark.usefixtures("sample_registry")
def test_serve_rejects_bad_values_naming_the_variable() -> None:
    code, text = run_cli(["serve", "sample", "--port", "70000"])
    assert code == 1
    assert "error: invalid setting port (TALKLIKE_SAMPLE_PORT)" in text
    assert "fix: correct --port or TALKLIKE_SAMPLE_PORT" in text
    code, text = run_cli(["serve", "sample", "--tags", "not json"])
    assert code == 1 and "--tags must be JSON" in text


def test_serve_names_a_service_whose_code_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = registry.ServiceEntry("ghost", "talklike.v1.Ghost", 1, 2, "talklike.ghost.settings:X", "x:y")
    monkeypatch.setattr(registry, "SERVICES", {"ghost": missing})
    code, text = run_cli(["serve", "ghost"])
    assert code == 1 and "the ghost service is not available in this installation" in text


def test_serve_group_has_one_command_per_registered_service() -> None:
    commands = {info.name for info in build_serve_app().registered_commands}
    assert commands == set(registry.SERVICES)


def test_up_rejects_unknown_only(tmp_path: Path) -> None:
    code, text = run_cli(["up", "--home", str(tmp_path), "--only", "generation,nope"])
    assert code == 1 and "only: unknown service(s) nope" in text


def test_up_names_a_service_whose_code_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = registry.ServiceEntry("ghost", "talklike.v1.Ghost", 1, 2, "talklike.ghost.settings:X", "x:y")
    monkeypatch.setattr(registry, "SERVICES", {"ghost": missing})
    code, text = run_cli(["up", "--home", str(tmp_path)])
    assert code == 1
    assert "error: the ghost service is not available in this installation" in text
    assert "leave that service out with --only" in text


def test_status_and_down_on_an_empty_home(tmp_path: Path) -> None:
    code, text = run_cli(["status", "--home", str(tmp_path)])
    assert code == 1 and "not serving: generation, moderation" in text, text  # scripts can wait on it
    for name in registry.SERVICES:
        assert name in text
    assert text.count("stopped") == len(registry.SERVICES)
    code, text = run_cli(["down", "--home", str(tmp_path)])
    assert code == 0 and text.count("was not running") == len(registry.SERVICES)


SERVE_SAMPLE = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from talklike.common import registry
registry.SERVICES = {{"sample": registry.ServiceEntry(
    "sample", {FULL_NAME!r}, 0, 0,
    "talklike_sample_service:SampleSettings", "talklike_sample_service:create_service")}}
from talklike.cli.main import app
app(sys.argv[1:])
"""


def test_talklike_serve_runs_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    home = tmp_path / "home"
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SAMPLE, "serve", "sample", "--home", str(home), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    entry: dict[str, object] = {}
    while time.monotonic() < deadline and not str(entry.get("message", "")).startswith("serving"):
        line = process.stderr.readline()
        assert line, f"talklike serve exited with {process.poll()}"
        entry = json.loads(line)
    assert entry["service"] == "sample"
    assert (home / "logs").is_dir() and (home / "datasets").is_dir(), "serve prepares the data home"
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
