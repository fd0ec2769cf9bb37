"""Fixtures for the disk_manager tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path
