"""Fixtures for the runtime's tests: the sample service (``talklike_sample_service``)."""

from __future__ import annotations

import pytest
from talklike.common.service import ServiceBinding
from talklike_sample_service import create_sample_service


@pytest.fixture
def sample_binding() -> ServiceBinding:
    """A fresh binding of the bytes-only sample service."""
    return create_sample_service()
