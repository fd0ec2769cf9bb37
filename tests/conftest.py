"""Fixtures for the whole suite.

Tests must not depend on the developer's shell: every ``TALKLIKE_*`` variable is removed for
the duration of each test (a test sets what it needs with ``monkeypatch.setenv``), so that a
``TALKLIKE_AUTH_TOKEN`` or ``TALKLIKE_HOME`` exported for a local stack cannot change results.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(autouse=True)
def _isolated_talklike_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hide the caller's TALKLIKE_* variables from the test, and undo what the code under test exports.

    A cache migration exports its new places (TALKLIKE_MODELS_DIR, HF_HUB_CACHE) into os.environ,
    which monkeypatch does not track; left there, they would change later tests (disk_manager's).
    """
    for name in list(os.environ):
        if name.startswith("TALKLIKE_"):
            monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    yield
    for name in set(os.environ) - set(before):
        del os.environ[name]
    for name, value in before.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a loopback TCP port that was free a moment ago."""
    return _free_port
