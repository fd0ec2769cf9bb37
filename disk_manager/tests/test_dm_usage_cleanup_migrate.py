"""Usage and watermarks, cleanup of junk caches, and migration that survives a failure half-way."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest
from disk_manager.cli import main as cli_main
from disk_manager.manager import parse_size
from disk_manager.testing import KIB, make_hf_repo, make_model

from disk_manager import CacheLocations, DiskManager, MigrationError, VolumeUsage, Watermarks, migrate

NOW = time.time()


def test_report_is_truthy_above_the_high_watermark(models_dir: Path) -> None:
    make_model(models_dir, "a", 100 * KIB, NOW)
    locations = CacheLocations.for_models_dir(models_dir)
    roomy = DiskManager(locations, capacity_bytes=10 * 1024 * KIB).check_disk_space()
    full = DiskManager(locations, capacity_bytes=110 * KIB).check_disk_space()
    assert not roomy and roomy.volumes[0].simulated
    assert full and full.low_on_space == full.volumes
    assert full.volumes[0].bytes_to_low_watermark > 0


def test_reserved_blocks_count_as_used_like_kubelet_counts_them() -> None:
    # ext4 keeps 5 % for root: 80 % used and 15 % available is 85 % gone for kubelet's nodefs.available.
    ext4 = VolumeUsage(
        "/", 1000, used_bytes=800, free_bytes=150, inodes_total=0, inodes_free=0, watermarks=Watermarks()
    )
    assert ext4.used_fraction == pytest.approx(0.85) and not ext4.above_high and ext4.above_low
    assert ext4.bytes_to_low_watermark == 100  # 250 available at 75 %
    fuller = VolumeUsage(
        "/", 1000, used_bytes=810, free_bytes=140, inodes_total=0, inodes_free=0, watermarks=Watermarks()
    )
    assert fuller.above_high  # used / total would say 81 %, and act only at kubelet's 10 % available
    inodes = VolumeUsage(
        "/", 1000, used_bytes=0, free_bytes=1000, inodes_total=100, inodes_free=10, watermarks=Watermarks()
    )
    assert inodes.above_high and inodes.bytes_to_low_watermark == 0  # out of inodes, not of bytes


def test_watermarks_are_validated() -> None:
    with pytest.raises(ValueError):
        Watermarks(high=0.5, low=0.9)


def test_evict_to_low_watermark(models_dir: Path) -> None:
    for i in range(4):
        make_model(models_dir, f"m{i}", 100 * KIB, NOW - 100 + i)
    dm = DiskManager(CacheLocations.for_models_dir(models_dir), capacity_bytes=450 * KIB)
    removal = dm.evict_to_low_watermark()
    assert removal.removed == ["models:m0"]
    assert dm.volumes()[0].used_fraction <= 0.75


def test_cleanup_removes_pip_conda_and_detached_hf_revisions(tmp_path: Path) -> None:
    pip = tmp_path / "pip"
    (pip / "http").mkdir(parents=True)
    (pip / "http" / "x").write_bytes(b"x" * 5000)
    conda = tmp_path / "conda"
    conda.mkdir()
    (conda / "numpy-1.0.tar.bz2").write_bytes(b"y" * 3000)
    (conda / "numpy-1.0").mkdir()  # an extracted package in use: kept
    hub = tmp_path / "hub"
    repo = make_hf_repo(hub, "org/model", 4 * KIB, NOW)
    (repo / "refs" / "main").unlink()  # the revision is now detached: stale
    dm = DiskManager(CacheLocations(hf_hub=hub, pip=pip, conda_pkgs=[conda]))

    dry = dm.cleanup_cache(dry_run=True)
    assert dry.freed_bytes >= 5000 + 3000 + 4 * KIB and pip.exists()
    done = dm.cleanup_cache()
    assert done.freed_bytes == dry.freed_bytes
    assert list(pip.iterdir()) == [] and not (conda / "numpy-1.0.tar.bz2").exists()
    assert (conda / "numpy-1.0").exists()
    assert not repo.exists()  # its only revision was stale, so huggingface_hub removes the repo
    with pytest.raises(ValueError, match="unknown cleanup kinds"):
        dm.cleanup_cache(kinds=["everything"])


def test_migrate_moves_links_and_exports(models_dir: Path, tmp_path: Path) -> None:
    make_model(models_dir, "a", 20 * KIB, NOW)
    make_hf_repo(models_dir / "hf" / "hub", "org/m", 10 * KIB, NOW)
    dm = DiskManager(CacheLocations.for_models_dir(models_dir))
    target = tmp_path / "workspace"
    result = dm.setup_network_storage(target)
    assert models_dir.is_symlink() and models_dir.resolve() == (target / "models").resolve()
    assert (models_dir / "a" / "model.safetensors").stat().st_size == 20 * KIB
    assert (models_dir / "hf" / "hub" / "models--org--m").is_dir()
    assert result.env["TALKLIKE_MODELS_DIR"] == str((target / "models").resolve())
    assert os.environ["TALKLIKE_MODELS_DIR"] == result.env["TALKLIKE_MODELS_DIR"]
    assert result.skipped["hf"] == "moved with the models directory"
    again = dm.setup_network_storage(target)
    assert again.moved == {} and again.skipped["models"].startswith("already a link")


def listing(root: Path) -> list[tuple[str, int]]:
    """Every cache file under ``root`` with its size (the agent's own .disk_manager state left out)."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1)
        for p in root.rglob("*")
        if ".disk_manager" not in p.parts
    )


def test_cleanup_after_migration_empties_the_moved_pip_cache(tmp_path: Path) -> None:
    pip = tmp_path / "pip"
    (pip / "http").mkdir(parents=True)
    (pip / "http" / "x").write_bytes(b"x" * 5000)
    dm = DiskManager(CacheLocations(pip=pip))
    dm.setup_network_storage(tmp_path / "workspace")
    assert pip.is_symlink()
    removal = dm.cleanup_cache(kinds=["pip"])
    assert removal.freed_bytes >= 5000 and removal.removed == [f"pip:{pip}"]
    assert pip.is_symlink() and list((tmp_path / "workspace" / "pip").iterdir()) == []  # really freed


def test_migrate_failure_half_way_leaves_the_old_cache_working(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        make_model(models_dir, f"m{i}", 4 * KIB, NOW)
    dm = DiskManager(CacheLocations.for_models_dir(models_dir))
    before = listing(models_dir)
    env_before = os.environ.get("TALKLIKE_MODELS_DIR")
    copied: list[str] = []
    real_copy = migrate.copy_file

    def failing_copy(src: str, dst: str) -> None:
        if len(copied) == 4:
            raise OSError(28, "No space left on device")
        copied.append(src)
        real_copy(src, dst)

    monkeypatch.setattr(migrate, "copy_file", failing_copy)
    target = tmp_path / "workspace"
    with pytest.raises(MigrationError, match="old cache is untouched"):
        dm.setup_network_storage(target)
    assert len(copied) == 4  # it did fail half-way, after copying some files
    assert not models_dir.is_symlink()
    assert listing(models_dir) == before
    assert sorted(e.key for e in dm.entries()) == [f"models:m{i}" for i in range(5)]  # still a working cache
    assert os.environ.get("TALKLIKE_MODELS_DIR") == env_before  # nothing exported
    assert [p.name for p in target.iterdir()] == []  # no staging directory left behind

    monkeypatch.setattr(migrate, "copy_file", real_copy)
    result = dm.setup_network_storage(target)  # once the cause is gone, it goes through
    assert result.moved == {"models": str((target / "models").resolve())}
    assert listing(models_dir) == before and models_dir.is_symlink()


def test_migrate_refuses_a_cache_that_changes_while_it_is_copied(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        make_model(models_dir, f"m{i}", 4 * KIB, NOW)
    dm = DiskManager(CacheLocations.for_models_dir(models_dir))
    real_copy = migrate.copy_file

    def copy_while_a_writer_adds_a_file(src: str, dst: str) -> None:
        real_copy(src, dst)
        (models_dir / "m0" / "late-shard.safetensors").write_bytes(b"z" * 100)

    monkeypatch.setattr(migrate, "copy_file", copy_while_a_writer_adds_a_file)
    with pytest.raises(MigrationError, match="changed while it was copied"):
        dm.setup_network_storage(tmp_path / "workspace")
    assert not models_dir.is_symlink()
    assert (models_dir / "m0" / "late-shard.safetensors").stat().st_size == 100  # the writer's work kept
    assert list((tmp_path / "workspace").iterdir()) == []


def test_migrate_refuses_a_target_inside_a_cache(models_dir: Path) -> None:
    make_model(models_dir, "a", 4 * KIB, NOW)
    dm = DiskManager(CacheLocations.for_models_dir(models_dir))
    for target in (models_dir, models_dir / "a" / "nfs"):
        with pytest.raises(MigrationError, match="lies inside the models cache"):
            dm.setup_network_storage(target)
    assert not (models_dir / "a" / "nfs").exists() and not models_dir.is_symlink()


def test_migrate_waits_for_entries_being_written(models_dir: Path, tmp_path: Path) -> None:
    make_model(models_dir, "converting", 4 * KIB, NOW)
    (models_dir / ".locks").mkdir()
    lock_path = models_dir / ".locks" / "converting.lock"
    lock_path.touch()
    dm = DiskManager(CacheLocations.for_models_dir(models_dir))
    with open(lock_path) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(MigrationError, match="models:converting"):
            dm.setup_network_storage(tmp_path / "workspace")
        assert dm.setup_network_storage(tmp_path / "workspace", dry_run=True).moved  # planning is fine
    assert not models_dir.is_symlink() and not (tmp_path / "workspace" / "models").exists()


def test_seed_snippet_runs_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's usage, verbatim, on caches placed by environment variables."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip"))
    monkeypatch.setenv("CONDA_PKGS_DIRS", str(tmp_path / "conda"))
    monkeypatch.setenv("TALKLIKE_HOME", str(tmp_path / "home"))
    make_hf_repo(tmp_path / "hf" / "hub", "org/m", 8 * KIB, NOW)
    (tmp_path / "pip").mkdir()
    (tmp_path / "pip" / "wheel").write_bytes(b"w" * 100)

    from disk_manager import DiskManager as SeedDiskManager

    dm = SeedDiskManager()
    if dm.check_disk_space():
        dm.cleanup_cache()
    dm.setup_network_storage(str(tmp_path / "workspace"))

    assert (tmp_path / "hf" / "hub").is_symlink()
    assert (tmp_path / "workspace" / "hf" / "models--org--m").is_dir()
    assert os.environ["HF_HUB_CACHE"] == str((tmp_path / "workspace" / "hf").resolve())


def test_parse_size() -> None:
    assert parse_size("10G") == 10 * 1024**3
    assert parse_size("1.5MiB") == int(1.5 * 1024**2)
    assert parse_size("2048") == 2048


def test_cli_status_and_dry_run_ensure(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_model(models_dir, "a", 100 * KIB, NOW - 100)
    assert cli_main(["--models-dir", str(models_dir), "--capacity", "120K", "status"]) == 0
    out = capsys.readouterr().out
    assert "LOW ON SPACE" in out and "models:a" in out
    assert (
        cli_main(["--models-dir", str(models_dir), "--capacity", "120K", "ensure", "50K", "--dry-run"]) == 0
    )
    assert "would free" in capsys.readouterr().out and (models_dir / "a").exists()
    assert cli_main(["--models-dir", str(models_dir), "--capacity", "120K", "ensure", "-5"]) == 2


def test_cli_pin_shows_in_status_holds_and_unpins(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_model(models_dir, "a", 100 * KIB, NOW - 100)
    base = ["--models-dir", str(models_dir), "--capacity", "120K"]
    assert cli_main([*base, "pin", "models:a", "--holder", "me", "--ttl", "60"]) == 0
    lease_id = capsys.readouterr().out.rsplit("lease id:", 1)[1].strip()
    assert cli_main([*base, "status"]) == 0
    pins = capsys.readouterr().out.split("lease id", 1)[1]
    assert "models:a" in pins and "me" in pins and lease_id in pins
    assert cli_main([*base, "ensure", "50K"]) == 2
    assert "short by" in capsys.readouterr().err and (models_dir / "a").exists()
    assert cli_main([*base, "unpin", lease_id]) == 0
    assert cli_main([*base, "unpin", lease_id]) == 1
    assert cli_main([*base, "migrate", str(tmp_path / "nfs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "would move" in out and f"export TALKLIKE_MODELS_DIR={(tmp_path / 'nfs' / 'models').resolve()}" in out
    )
    assert not models_dir.is_symlink()
    assert cli_main([*base, "ensure", "50K"]) == 0 and not (models_dir / "a").exists()
