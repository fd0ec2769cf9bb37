"""The adapter store under the data home: names, paths that never leave it, manifests."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talklike.common.errors import FailedPrecondition, InvalidArgument, NotFound, quote
from talklike.common.paths import resolve_in_home

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MANIFEST = "adapter_manifest.json"
#: The only weights file served: safetensors holds tensors only, a pickle can run code when loaded.
WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".ckpt"})


@dataclass(frozen=True)
class LoadedAdapter:
    """An adapter being served."""

    name: str
    path: Path
    manifest: dict[str, Any]
    loaded_at: float


def validate_name(name: str, field: str = "name") -> str:
    """A servable adapter name, or InvalidArgument naming ``field``."""
    if not NAME.match(name) or name in {".", ".."}:
        raise InvalidArgument(
            field, f"{name!r} is not an adapter name: use 1-64 letters, digits, '_', '.', '-'"
        )
    return name


def locate(store: Path, name: str, path: str) -> Path:
    """The adapter directory for a LoadAdapter request, inside the store, with its weights present."""
    validate_name(name)
    directory = resolve_in_home(store, path or name, "path")
    if directory == store.resolve():
        raise InvalidArgument("path", "must name an adapter directory inside the adapter store")
    if not (directory / "adapter_config.json").exists() and not (directory / MANIFEST).exists():
        raise NotFound(
            "adapter", path or name, f"no adapter_config.json in {directory}; train it first (talklike train)"
        )
    # An OpenAI fine-tune is a manifest alone; weights, when there are any, must be safetensors.
    found = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    has_weights = bool(found) or (directory / "adapter_config.json").exists()
    if has_weights and not (directory / WEIGHTS).is_file():
        raise FailedPrecondition(
            f"adapter {quote(path or name)} has no {WEIGHTS} in {directory}"
            + (f" (found {', '.join(found)}: pickled weights, which are never loaded)" if found else "")
            + "; only safetensors adapters are served: save it with safe_serialization or retrain it (talklike train)"
        )
    return directory


def read_manifest(directory: Path) -> dict[str, Any]:
    """The training service's manifest, or {} for an adapter made elsewhere."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise FailedPrecondition(
            f"{directory / MANIFEST} is not valid JSON ({exc}); retrain or fix it"
        ) from exc
    return data if isinstance(data, dict) else {}


def check_base(manifest: dict[str, Any], base_sha256: str, name: str) -> None:
    """Refuse an adapter trained on another base model (its manifest says which)."""
    trained_on = (
        (manifest.get("base_model") or {}).get("sha256")
        if isinstance(manifest.get("base_model"), dict)
        else None
    )
    trained_on = trained_on or manifest.get("base_model_sha256")
    if trained_on and base_sha256 and trained_on != base_sha256:
        raise FailedPrecondition(
            f"adapter {name!r} was trained on a base model with weights {trained_on[:12]}…, but this service "
            f"serves {base_sha256[:12]}…; serve the same base model or retrain the adapter"
        )


def loaded(name: str, path: Path, manifest: dict[str, Any]) -> LoadedAdapter:
    return LoadedAdapter(name=name, path=path, manifest=manifest, loaded_at=time.time())
