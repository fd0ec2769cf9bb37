"""The CLI's error sentences for failed calls, from real gRPC errors, and its table/progress helpers."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import grpc
import pytest
import typer
from rich.console import Console
from rich.text import Text
from talklike.cli import output
from talklike.cli.output import fail, iter_progress, rpc_errors, table
from talklike.common.errors import FailedPrecondition
from talklike.common.service import ServiceBinding
from talklike.common.settings import ServiceSettings
from talklike.common.testing import running_service
from talklike_sample_service import method


def stderr_text(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_fail_prints_message_and_fix(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as caught:
        fail("the pack [x] is empty", "add at least one template", code=3)
    assert caught.value.exit_code == 3
    assert stderr_text(capsys) == "error: the pack [x] is empty fix: add at least one template"


def test_unavailable_names_the_address_and_talklike_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, free_port: Callable[[], int]
) -> None:
    port = free_port()
    monkeypatch.setenv("TALKLIKE_INFERENCE_PORT", str(port))
    with (
        pytest.raises(typer.Exit) as caught,
        rpc_errors("inference"),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        channel.unary_unary(method("Echo"))(b"x", timeout=2)
    assert caught.value.exit_code == 1
    text = stderr_text(capsys)
    assert f"cannot reach the inference service at 127.0.0.1:{port}" in text
    assert "talklike up" in text and "TALKLIKE_INFERENCE_ADDRESS" in text


async def call_and_explain(
    binding: ServiceBinding, settings: ServiceSettings, payload: bytes, capsys: pytest.CaptureFixture[str]
) -> str:
    async with running_service(binding, settings) as srv:

        def call() -> None:
            with rpc_errors("generation"), grpc.insecure_channel(srv.address) as channel:
                channel.unary_unary(method("Raise"))(payload, timeout=5)

        with pytest.raises(typer.Exit):
            await asyncio.to_thread(call)
    return stderr_text(capsys)


async def test_invalid_argument_names_the_field(
    sample_binding: ServiceBinding, capsys: pytest.CaptureFixture[str]
) -> None:
    text = await call_and_explain(sample_binding, ServiceSettings(port=0), b"invalid", capsys)
    assert "error: sampling.temperature: must be between 0 and 2" in text
    assert "correct `sampling.temperature`" in text


async def test_unauthenticated_says_which_variable(
    sample_binding: ServiceBinding, capsys: pytest.CaptureFixture[str]
) -> None:
    text = await call_and_explain(sample_binding, ServiceSettings(port=0, auth_token="t"), b"invalid", capsys)
    assert "refused the call" in text and "set TALKLIKE_AUTH_TOKEN" in text


async def test_internal_points_at_the_log(
    sample_binding: ServiceBinding, capsys: pytest.CaptureFixture[str]
) -> None:
    text = await call_and_explain(sample_binding, ServiceSettings(port=0), b"bug", capsys)
    assert "request id" in text and "generation log" in text


async def test_failed_precondition_is_the_services_own_sentence(
    sample_binding: ServiceBinding, capsys: pytest.CaptureFixture[str]
) -> None:
    text = await call_and_explain(sample_binding, ServiceSettings(port=0), b"precondition", capsys)
    assert text == "error: job is not running"


def test_domain_error_on_the_client_side(capsys: pytest.CaptureFixture[str]) -> None:
    @rpc_errors("generation")
    def command() -> None:
        raise FailedPrecondition("cannot read TALKLIKE_TLS_CA_FILE")

    with pytest.raises(typer.Exit):
        command()
    assert "error: cannot read TALKLIKE_TLS_CA_FILE" in stderr_text(capsys)


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), rpc_errors("generation"):
        raise KeyError("x")


def test_table_markup_is_optional() -> None:
    console = Console(width=80, record=True)
    console.print(table(["a"], [("[red]LOW[/]",)]))
    console.print(table(["a"], [("[data] file",)], markup=False))
    console.print(table(["a"], [(Text("[kept]"),)]))
    text = console.export_text()
    assert "LOW" in text and "[red]" not in text
    assert "[data] file" in text and "[kept]" in text


def test_table_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    rendered = table(["service", "pid"], [("generation", 12), ("inference", None)], title="stack")
    assert [column.header for column in rendered.columns] == ["service", "pid"]
    assert rendered.row_count == 2
    assert list(iter_progress([1, 2, 3], "items")) == [1, 2, 3]
    assert "3/3" not in capsys.readouterr().err  # not a terminal: no squeezed last frame in the log


def test_progress_on_a_terminal_stays_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(output, "err_console", Console(file=screen, force_terminal=True, width=100))
    assert list(iter_progress([1, 2, 3], "items")) == [1, 2, 3]
    assert "3/3" in screen.getvalue()
