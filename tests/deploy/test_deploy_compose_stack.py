"""The real thing: build the image, bring the compose stack up, run a quick pipeline through it.

Needs a reachable Docker engine with the compose plugin (`docker compose`), and network for
the image build (Docker Hub for the base image, the PyTorch CPU index, PyPI); it is skipped
with the reason everywhere else (this project's CI machine has no engine). The stack runs
under its own project name with no published ports, so a developer's own stack and ports are
left alone, and it is taken down with its volume at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from deploy_helpers import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3600)]

#: The seed persona once its pack ships, else the English sample pack (as tests/e2e does).
PACK = "babis" if (ROOT / "services/generation/packs/babis/persona.yaml").exists() else "puffington"
SERVERS = ("disk-agent", "generation", "moderation", "training", "inference")


def _engine_problem() -> str | None:
    """Why the stack cannot run here, or None when it can."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return "the docker client library is not installed (make install: the dev extras)"
    try:
        docker.from_env(timeout=5).ping()
    except DockerException as error:
        return f"no Docker engine is reachable ({error})"
    if shutil.which("docker") is None:
        return "the docker command-line client is not installed"
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    if plugin.returncode != 0:
        return "the docker compose plugin is not installed (docker compose version failed)"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    problem = _engine_problem()
    if problem is not None:
        pytest.skip(problem)
    from testcontainers.compose import DockerCompose

    work = tmp_path_factory.mktemp("compose")
    env_file = work / "smoke.env"
    env_file.write_text("TALKLIKE_INFERENCE_BASE_MODEL=tiny\nTALKLIKE_LOG_FORMAT=text\n")
    # No published ports: the pipeline runs inside the stack's network (the cli container).
    override = work / "no-ports.yml"
    override.write_text("services:\n" + "".join(f"  {name}:\n    ports: !reset []\n" for name in SERVERS))
    compose = DockerCompose(
        ROOT,
        compose_file_name=["docker-compose.yml", str(override)],
        build=True,
        wait=True,
        env_file=str(env_file),
    )
    # Its own project (every docker compose call here inherits it): `down --volumes` at the end
    # must never touch a developer's own stack.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPOSE_PROJECT_NAME", f"talklike-smoke-{uuid.uuid4().hex[:8]}")
        compose.start()
        try:
            yield compose.docker_compose_command()
        finally:
            stdout, stderr = compose.get_logs()
            (work / "stack.log").write_text(stdout + stderr)
            compose.stop(down=True)


def _run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)


def test_every_service_is_healthy(stack: list[str]) -> None:
    ps = _run([*stack, "ps", "--format", "json"], 60)
    assert ps.returncode == 0, ps.stderr
    lines = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
    rows = [row for line in lines for row in (line if isinstance(line, list) else [line])]
    health = {row["Service"]: row.get("Health") for row in rows}
    assert health == dict.fromkeys(SERVERS, "healthy")


def test_quick_pipeline_through_the_stack(stack: list[str]) -> None:
    pipeline = [
        *stack,
        "run",
        "--rm",
        "cli",
        "pipeline",
        "run",
        "--pack",
        PACK,
        "--base-model",
        "tiny",
        "--out",
        "runs/smoke",
        "--count",
        "240",
        "--max-steps",
        "40",
        "--learning-rate",
        "0.003",
        "--eval-questions",
        "10",
        "--max-new-tokens",
        "24",
    ]
    run = _run(pipeline, 1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = _run(
        [*stack, "run", "--rm", "--entrypoint", "cat", "cli", "/data/runs/smoke/report/summary.json"], 300
    )
    assert summary.returncode == 0, summary.stderr
    report = json.loads(summary.stdout)
    assert report["questions"] == 10
    # The adapter trained in the training container and served by the inference container
    # makes the held-out answers likelier: the pipeline really went through both.
    assert report["perplexity"]["after"] < report["perplexity"]["before"]


def test_health_check_script_is_in_the_image(stack: list[str]) -> None:
    probe = _run([*stack, "exec", "-T", "inference", "talklike-healthcheck"], 60)
    assert probe.returncode == 0 and "SERVING" in probe.stdout, probe.stdout + probe.stderr


def test_log_lines_reach_docker(stack: list[str]) -> None:
    logs = _run([*stack, "logs", "--no-color", "disk-agent"], 60)
    assert "serving talklike.v1.DiskAgentService" in logs.stdout + logs.stderr
