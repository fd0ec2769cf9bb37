"""A tiny base model and a LoRA adapter on it, in a data home shared by the module's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_adapters import make_adapter


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("inference-home")
    make_adapter(home, "persona")
    return home
