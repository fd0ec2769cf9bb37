"""Disk agent settings: read from TALKLIKE_DISK_AGENT_*, defaults under the data home, checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from talklike.disk_agent.settings import DiskAgentSettings


def test_defaults_manage_the_models_cache_of_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKLIKE_HOME", str(tmp_path / "home"))
    settings = DiskAgentSettings()
    assert settings.managed_models_dir == (tmp_path / "home" / "models").resolve()
    assert settings.capacity_bytes == 0  # the real volume is measured
    assert (settings.high_watermark, settings.low_watermark) == (0.85, 0.75)
    assert 1 - settings.high_watermark > 0.10  # acts before kubelet's nodefs.available<10% eviction
    assert settings.allowed_migration_targets == [Path("/workspace").resolve()]


def test_environment_sets_the_agent_s_own_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_MODELS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_CAPACITY_BYTES", "1048576")
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_HIGH_WATERMARK", "0.9")
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_LOW_WATERMARK", "0.8")
    monkeypatch.setenv("TALKLIKE_DISK_AGENT_MIGRATION_TARGETS", f" {tmp_path / 'a'} ,, {tmp_path / 'b'} ")
    settings = DiskAgentSettings()
    assert settings.managed_models_dir == (tmp_path / "cache").resolve()
    assert settings.capacity_bytes == 1 << 20
    assert (settings.high_watermark, settings.low_watermark) == (0.9, 0.8)
    assert settings.allowed_migration_targets == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]


@pytest.mark.parametrize(
    "overrides",
    [
        {"low_watermark": 0.9, "high_watermark": 0.8},
        {"high_watermark": 1.0},
        {"low_watermark": 0.0},
        {"capacity_bytes": -1},
        {"watch_interval_ms": 10},
    ],
)
def test_bad_values_are_refused(tmp_path: Path, overrides: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        DiskAgentSettings.model_validate({"home": tmp_path, **overrides})
