"""Fixtures for the disk_manager tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from disk_manager.migrate import ENV_FOR_KIND


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def restore_cache_environment() -> Iterator[None]:
    """Migration exports HF_HUB_CACHE etc. into os.environ on purpose; undo that after each test.

    Without this a migrated temp directory (gone after the test) would stay the HF cache of
    every test that runs later in the same process.
    """
    saved = {name: os.environ.get(name) for name in ENV_FOR_KIND.values()}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
