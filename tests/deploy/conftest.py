"""Fixtures of the deploy tests: the compose file and the overlays, rendered once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import COMPOSE_PROFILES, OVERLAYS, ROOT, compose_config, kustomize


@pytest.fixture(scope="session")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty --env-file: a developer's own .env must not change what the tests see."""
    path = tmp_path_factory.mktemp("compose-env") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="session")
def compose(empty_env_file: Path) -> dict[str, Any]:
    """docker-compose.yml as docker-compose resolves it, every profile on, defaults interpolated."""
    text = compose_config(ROOT / "docker-compose.yml", profiles=COMPOSE_PROFILES, env_file=empty_env_file)
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each overlay rendered by kustomize: overlay name → its objects."""
    return {
        overlay: [doc for doc in yaml.safe_load_all(kustomize(ROOT / "k8s" / "overlays" / overlay)) if doc]
        for overlay in OVERLAYS
    }
