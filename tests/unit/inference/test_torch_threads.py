"""The transformers backend leaves the event loop a CPU: torch gets one fewer thread than the CPUs."""

from __future__ import annotations

import os

import pytest
from talklike.inference.backends.transformers_backend import default_torch_threads


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (16, 15)])
def test_one_fewer_than_the_usable_cpus(monkeypatch: pytest.MonkeyPatch, cpus: int, threads: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_torch_threads() == threads
