"""Move caches to another volume (network storage) without ever leaving them broken.

The order is what makes it safe: copy into a temporary directory on the target, verify
every file's size, rename it into place, and only then switch the old path to a symlink
and point the environment at the new place; the local copy is deleted last. A failure
before the switch removes the partial copy and leaves the old cache exactly as it was.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from disk_manager.caches import CacheLocations
from disk_manager.errors import MigrationError

#: Environment variable that tells each tool where its cache is.
ENV_FOR_KIND = {
    "hf": "HF_HUB_CACHE",
    "torch": "TORCH_HOME",
    "pip": "PIP_CACHE_DIR",
    "models": "TALKLIKE_MODELS_DIR",
}


@dataclass
class MigrationResult:
    """Where each cache now lives, the environment to use, and the bytes moved."""

    moved: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    bytes_moved: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


def copy_file(src: str, dst: str) -> None:
    """Copy one file with its times (a module function so tests can inject a failure half-way)."""
    shutil.copy2(src, dst, follow_symlinks=False)


def _manifest(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                out[str(path.relative_to(root))] = path.stat().st_size
    return out


def _differences(a: dict[str, int], b: dict[str, int]) -> list[str]:
    """Relative paths present in one manifest only, or with different sizes."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _migrate_one(kind: str, src: Path, dest: Path, dry_run: bool, result: MigrationResult) -> None:
    if src.is_symlink():
        result.skipped[kind] = f"already a link to {os.readlink(src)}"
        return
    if not src.is_dir():
        result.skipped[kind] = "not present"
        return
    if dest.exists():
        raise MigrationError(f"{dest} already exists; move it away or choose another target")
    expected = _manifest(src)
    size = sum(expected.values())
    if dry_run:
        result.moved[kind] = str(dest)
        result.bytes_moved += size
        return
    staging = dest.with_name(f".{dest.name}.migrating-{os.getpid()}")
    try:
        shutil.copytree(src, staging, symlinks=True, copy_function=copy_file)
        copied = _manifest(staging)
        if copied != expected:
            differ = _differences(expected, copied)
            raise MigrationError(
                f"verification of the {kind} copy failed: {len(differ)} files differ, e.g. {differ[:3]}; "
                "the old cache is untouched"
            )
        now = _manifest(src)
        if now != expected:
            differ = _differences(expected, now)
            raise MigrationError(
                f"the {kind} cache changed while it was copied ({len(differ)} files, e.g. {differ[:3]}): "
                "something is writing to it; the old cache is untouched — retry when it is idle"
            )
        staging.rename(dest)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, MigrationError):
            raise
        raise MigrationError(
            f"copying {kind} cache {src} → {dest} failed ({exc}); the old cache is untouched"
        ) from exc
    old = src.with_name(f".{src.name}.old-{os.getpid()}")
    src.rename(old)
    try:
        src.symlink_to(dest, target_is_directory=True)
    except OSError as exc:
        old.rename(src)
        raise MigrationError(
            f"could not link {src} → {dest} ({exc}); the old cache is back in place"
        ) from exc
    shutil.rmtree(old, ignore_errors=True)
    result.moved[kind] = str(dest)
    result.bytes_moved += size


def migrate_caches(locations: CacheLocations, target: Path, dry_run: bool = False) -> MigrationResult:
    """Move every managed cache directory under ``target/<kind>`` and export the new locations."""
    result = MigrationResult(dry_run=dry_run)
    target = target.expanduser().resolve()
    kinds = {
        "models": locations.models,
        "hf": locations.hf_hub,
        "torch": locations.torch,
        "pip": locations.pip,
    }
    for kind, src in kinds.items():
        # A copy into the tree being copied would copy itself without end.
        if src is not None and src.exists() and target.is_relative_to(src.resolve()):
            raise MigrationError(
                f"target {target} lies inside the {kind} cache {src.resolve()}; choose a place outside it"
            )
    if not dry_run:
        target.mkdir(parents=True, exist_ok=True)
    for kind, src in kinds.items():
        if src is None:
            continue
        if (
            kind == "hf"
            and locations.models
            and src.is_relative_to(locations.models)
            and ("models" in result.moved or locations.models.is_symlink())
        ):
            result.skipped[kind] = "moved with the models directory"
            continue
        _migrate_one(kind, src, target / kind, dry_run, result)
        if kind in result.moved:
            result.env[ENV_FOR_KIND[kind]] = result.moved[kind]
    if not dry_run:
        os.environ.update(result.env)
    return result
