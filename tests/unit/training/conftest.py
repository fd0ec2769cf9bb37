"""The integration tests' persona dataset, for the unit tests that train a few steps of ``tiny``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SOURCE = Path(__file__).parents[2] / "integration" / "training" / "conftest.py"


@pytest.fixture
def persona_home(tmp_path: Path) -> Path:
    spec = importlib.util.spec_from_file_location("training_persona_dataset", _SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_dataset(tmp_path)
    return tmp_path
