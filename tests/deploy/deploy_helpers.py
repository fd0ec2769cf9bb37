"""Helpers of the deploy tests: where the tools are, and how to run them on a file.

The checks run offline with the tools `make deploy-tools` installs (docker-compose from
Debian, kubectl) and the dev extras (hadolint, kubernetes-validate). Where a tool is missing a
test is skipped with the fix, except under CI, where a skipped check would be a green lie.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("cpu", "gpu")
#: Compose profiles beside the default set: the vLLM inference service and the CLI container.
COMPOSE_PROFILES = ("gpu", "tools")


def tool(name: str) -> str:
    """The path of a command-line tool: on PATH or beside this Python (the venv's bin)."""
    found = shutil.which(name)
    if found is None:
        candidate = Path(sys.executable).parent / name
        found = str(candidate) if candidate.exists() else None
    if found is None:
        message = f"{name} is not installed: run `make deploy-tools` (or `make install` for the dev extras)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def clean_env() -> dict[str, str]:
    """An environment without the caller's settings, so compose interpolates only its defaults."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {key: os.environ[key] for key in keep if key in os.environ}


def compose_config(compose_file: Path, *, profiles: tuple[str, ...] = (), env_file: Path) -> str:
    """``docker-compose config`` of ``compose_file`` (raises CalledProcessError with its stderr)."""
    command = [tool("docker-compose"), "--env-file", str(env_file), "-f", str(compose_file)]
    for profile in profiles:
        command += ["--profile", profile]
    result = subprocess.run(
        [*command, "config"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=compose_file.parent,
    )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, command, result.stdout, result.stderr)
    return result.stdout


def kustomize(directory: Path) -> str:
    """``kubectl kustomize DIRECTORY`` (raises CalledProcessError with its stderr)."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, "kubectl kustomize", result.stdout, result.stderr
        )
    return result.stdout
