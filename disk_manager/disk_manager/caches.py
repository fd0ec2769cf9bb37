"""Where caches live and what is in them, as evictable entries.

An entry is the unit that is deleted or kept as a whole: a Hugging Face repo, a converted
model directory, a torch hub checkpoint. Entries that are being written (``.incomplete``
downloads, temporary directories) or whose lock file is held by another process are
reported but never deleted: deleting half a download corrupts it for whoever is writing.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from disk_manager.usage import tree_stats

EVICTABLE_KINDS = ("hf", "models", "torch")
CLEANUP_KINDS = ("pip", "conda", "hf-stale")
TEMP_MARKERS = (".incomplete", ".tmp", ".partial", ".lock-write")
#: Part of the name an entry is renamed to just before it is deleted: no longer an entry.
EVICTING_MARK = ".evicting-"


@dataclass(frozen=True)
class CacheEntry:
    """One deletable unit of a cache."""

    key: str
    kind: str
    path: Path
    size_bytes: int
    files: int
    last_used: float
    incomplete: bool = False
    locked: bool = False
    detail: str = ""

    @property
    def evictable(self) -> bool:
        """Safe to delete when not pinned: complete and not locked."""
        return not (self.incomplete or self.locked)


@dataclass
class CacheLocations:
    """The cache directories a DiskManager manages; ``None`` for a kind not managed."""

    hf_hub: Path | None = None
    models: Path | None = None
    torch: Path | None = None
    pip: Path | None = None
    conda_pkgs: list[Path] = field(default_factory=list)

    @classmethod
    def from_environment(cls) -> CacheLocations:
        """The usual places, honouring HF_HOME / HF_HUB_CACHE, TORCH_HOME, PIP_CACHE_DIR, CONDA_PKGS_DIRS, TALKLIKE_HOME."""
        home = Path.home()
        xdg = Path(os.environ.get("XDG_CACHE_HOME", home / ".cache"))
        hf_hub = os.environ.get("HF_HUB_CACHE") or (
            str(Path(os.environ["HF_HOME"]) / "hub")
            if os.environ.get("HF_HOME")
            else str(xdg / "huggingface" / "hub")
        )
        conda = [Path(p) for p in os.environ.get("CONDA_PKGS_DIRS", "").split(os.pathsep) if p]
        if not conda:
            conda = [
                p for p in (home / ".conda" / "pkgs", home / "miniconda3" / "pkgs", Path("/opt/conda/pkgs"))
            ]
        talklike_home = os.environ.get("TALKLIKE_HOME")
        return cls(
            hf_hub=Path(hf_hub),
            models=Path(talklike_home) / "models" if talklike_home else None,
            torch=Path(os.environ.get("TORCH_HOME", xdg / "torch")),
            pip=Path(os.environ.get("PIP_CACHE_DIR", xdg / "pip")),
            conda_pkgs=conda,
        )

    @classmethod
    def for_models_dir(cls, models: Path) -> CacheLocations:
        """talklike's layout: converted models in ``models/``, the HF cache under ``models/hf/hub``."""
        return cls(hf_hub=models / "hf" / "hub", models=models)

    def roots(self) -> list[Path]:
        """Every managed directory (whether it exists yet or not)."""
        found = [p for p in (self.models, self.hf_hub, self.torch, self.pip) if p is not None]
        return [p.resolve() for p in [*found, *self.conda_pkgs]]


def is_locked(lock_path: Path) -> bool:
    """True when another open file description holds an exclusive or shared flock on ``lock_path``."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _dir_entry(kind: str, name: str, path: Path, lock: Path | None, detail: str = "") -> CacheEntry:
    """An entry for a directory or a single file, from one walk."""
    if path.is_dir():
        stats = tree_stats(path, TEMP_MARKERS)
        size, files, last_used, temp = stats.size_bytes, stats.files, stats.newest_use, stats.has_temp_parts
        if last_used == 0.0:
            st = path.stat()
            last_used = max(st.st_atime, st.st_mtime)
    else:
        st = path.stat()
        size, files, last_used, temp = st.st_size, 1, max(st.st_atime, st.st_mtime), False
    return CacheEntry(
        key=f"{kind}:{name}",
        kind=kind,
        path=path,
        size_bytes=size,
        files=files,
        last_used=last_used,
        incomplete=temp or name.startswith(".") or name.endswith(TEMP_MARKERS),
        locked=bool(lock and lock.exists() and is_locked(lock)),
        detail=detail,
    )


def scan_models(root: Path) -> Iterator[CacheEntry]:
    """talklike's converted models: one entry per sub-directory (``hf/`` is the HF cache, scanned apart).

    A conversion holds ``.locks/<name>.lock`` while it writes and writes into a dot-named
    temporary directory, so both show up as not evictable.
    """
    if not root.is_dir():
        return
    for child in sorted(root.iterdir()):
        if (
            child.name in {"hf", ".locks", ".disk_manager"}
            or EVICTING_MARK in child.name
            or not child.is_dir()
        ):
            continue
        yield _dir_entry("models", child.name, child, root / ".locks" / f"{child.name}.lock")


def scan_hf(hub: Path) -> Iterator[CacheEntry]:
    """One entry per Hugging Face repo, with its revisions and refs in ``detail``.

    ``huggingface_hub.scan_cache_dir`` understands the blobs/snapshots/refs layout (blobs
    shared between revisions are counted once); a repo with an ``.incomplete`` blob is a
    download in progress.
    """
    if not hub.is_dir():
        return
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hub)
    for repo in sorted(info.repos, key=lambda r: str(r.repo_path)):
        revisions = ", ".join(
            f"{rev.commit_hash[:8]}({'/'.join(sorted(rev.refs)) or 'detached'})" for rev in repo.revisions
        )
        blobs = repo.repo_path / "blobs"
        incomplete = blobs.is_dir() and any(p.name.endswith(".incomplete") for p in blobs.iterdir())
        lock_dir = hub / ".locks" / repo.repo_path.name
        locked = lock_dir.is_dir() and any(is_locked(p) for p in lock_dir.iterdir() if p.is_file())
        yield CacheEntry(
            key=f"hf:{repo.repo_path.name}",
            kind="hf",
            path=repo.repo_path,
            size_bytes=repo.size_on_disk,
            files=repo.nb_files,
            last_used=max(repo.last_accessed, repo.last_modified),
            incomplete=incomplete,
            locked=locked,
            detail=f"{repo.repo_type} {repo.repo_id}; revisions: {revisions}",
        )


def scan_torch(torch_home: Path) -> Iterator[CacheEntry]:
    """torch hub: each checkpoint file and each downloaded hub repo."""
    checkpoints = torch_home / "hub" / "checkpoints"
    if checkpoints.is_dir():
        for path in sorted(checkpoints.iterdir()):
            if path.is_file() and EVICTING_MARK not in path.name:
                yield _dir_entry("torch", f"checkpoints/{path.name}", path, None)
    hub = torch_home / "hub"
    if hub.is_dir():
        for path in sorted(hub.iterdir()):
            if path.is_dir() and path.name != "checkpoints" and EVICTING_MARK not in path.name:
                yield _dir_entry("torch", path.name, path, None)


def scan(locations: CacheLocations) -> list[CacheEntry]:
    """Every evictable-kind entry of the managed caches."""
    entries: list[CacheEntry] = []
    if locations.models:
        entries.extend(scan_models(locations.models))
    if locations.hf_hub:
        entries.extend(scan_hf(locations.hf_hub))
    if locations.torch:
        entries.extend(scan_torch(locations.torch))
    return entries
