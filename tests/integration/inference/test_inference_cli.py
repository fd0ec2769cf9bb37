"""``talklike chat`` and ``talklike models`` as a person runs them, against a real service on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli_runner import serving, talklike
from talklike.inference.servicer import create_service
from talklike.inference.settings import InferenceSettings

QUESTION = "Pane předsedo, jak hodnotíte inflaci?"


@pytest.fixture
async def cli_env(tiny_home: Path) -> AsyncIterator[dict[str, str]]:
    settings = InferenceSettings(
        home=tiny_home, base_model="tiny", port=0, metrics_port=0, http_port=0, preload_adapters="persona"
    )
    async with serving(create_service(settings), settings, "inference") as env:
        yield env


async def test_chat_streams_the_same_greedy_answer_it_gives_unary(cli_env: dict[str, str]) -> None:
    streamed = await talklike(cli_env, "chat", QUESTION, "--adapter", "persona", "--max-new-tokens", "16")
    unary = await talklike(
        cli_env, "chat", QUESTION, "--adapter", "persona", "--max-new-tokens", "16", "--no-stream"
    )
    base = await talklike(cli_env, "chat", QUESTION, "--max-new-tokens", "16", "--no-stream")
    for result in (streamed, unary, base):
        assert result.exit_code == 0, result.output
    assert streamed.stdout.strip() and streamed.stdout.strip() == unary.stdout.strip()
    assert base.stdout.strip() != unary.stdout.strip()  # the adapter changes the answer


async def test_models_lists_the_base_and_the_adapters(cli_env: dict[str, str]) -> None:
    result = await talklike(cli_env, "models")
    assert result.exit_code == 0, result.output
    assert "base: tiny (tiny, transformers" in result.stdout and "context 512" in result.stdout
    assert "persona" in result.stdout and "adapters/persona" in result.stdout


async def test_errors_are_one_sentence_and_a_fix(cli_env: dict[str, str]) -> None:
    unknown = await talklike(cli_env, "chat", QUESTION, "--adapter", "nobody")
    assert (
        unknown.exit_code == 1 and "nobody" in unknown.output and "loaded adapters: persona" in unknown.output
    )
    assert "fix:" in unknown.output and "Traceback" not in unknown.output
    hot = await talklike(cli_env, "chat", QUESTION, "--temperature", "5")
    assert hot.exit_code == 1 and "sampling.temperature" in hot.output and "fix:" in hot.output
    down = await talklike({**cli_env, "TALKLIKE_INFERENCE_ADDRESS": "127.0.0.1:1"}, "models")
    assert down.exit_code == 1 and "cannot reach the inference service" in down.output


async def test_no_service_running_is_said_with_the_fix(tmp_path: Path) -> None:
    """The client raises a domain error; the CLI still explains the call that failed."""
    env = {"TALKLIKE_HOME": str(tmp_path), "TALKLIKE_INFERENCE_ADDRESS": "127.0.0.1:9", "COLUMNS": "200"}
    result = await talklike(env, "models")
    assert result.exit_code == 1 and "cannot reach the inference service at 127.0.0.1:9" in result.output
    assert "talklike up" in result.output
