"""Small packs written by the tests: a valid base that each test breaks or shrinks on purpose."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

BASE: dict[str, Any] = {
    "persona.yaml": {
        "name": "mini",
        "display_name": "Mini Persona",
        "language": "en",
        "signature": "Mini Sig",
        "satire": False,
        "description": "A tiny test persona.",
        "system_prompt": "You are Mini.",
        "topic_placeholder": "topic",
        "catchphrases": ["oh my"],
    },
    "styles.yaml": {
        "styles": [
            {"id": "loud", "name": "Loud", "description": "Shouts."},
            {"id": "calm", "name": "Calm", "description": "Whispers."},
        ]
    },
    "placeholders.yaml": {
        "placeholders": {
            "topic": ["taxes", "roads", "schools", "parks"],
            "enemy": ["the council", "the press", "the rivals"],
            "verb": ["lie", "sleep", "shout"],
        }
    },
    "templates/loud.yaml": {
        "templates": [
            {"id": "l-1", "style": "loud", "topic": "*", "text": "About {topic}: {enemy} {verb}!"},
            {"id": "l-2", "style": "loud", "topic": "*", "text": "{topic} is a scandal and {enemy} know it."},
            {"id": "l-3", "style": "loud", "topic": "roads", "text": "The roads! {enemy} {verb} about them."},
        ]
    },
    "templates/calm.yaml": {
        "templates": [
            {
                "id": "c-1",
                "style": "calm",
                "topic": "*",
                "text": "Well, {topic} is fine, whatever {enemy} say.",
            },
            {"id": "c-2", "style": "calm", "topic": "*", "text": "I think {enemy} {verb} about {topic}."},
        ]
    },
    "slips.yaml": {
        "slips": [
            {"id": "um", "description": "filler", "find": "^", "replace": "Um, "},
            {"id": "like", "description": "filler at the end", "find": "$", "replace": " Like."},
        ]
    },
    "questions.yaml": {
        "questions": [
            {"id": "q-1", "topic": "*", "styles": ["*"], "text": "What about {topic}?"},
            {"id": "q-2", "topic": "*", "styles": ["loud"], "text": "Why so angry about {topic}?"},
            {"id": "q-3", "topic": "*", "styles": ["calm"], "text": "Are you relaxed about {topic}?"},
            {"id": "q-4", "topic": "roads", "styles": ["*"], "text": "When will the roads be fixed?"},
            {"id": "q-5", "topic": "*", "styles": ["*"], "text": "Do {enemy} matter on {topic}?"},
        ]
    },
}

PackWriter = Callable[..., Path]


def write_pack_files(root: Path, files: dict[str, Any], name: str = "mini") -> Path:
    """Write ``files`` (relative path → YAML document, or raw text) as pack ``name`` under ``root``."""
    path = root / name
    for relative, document in files.items():
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(document, str | bytes):
            target.write_bytes(document.encode() if isinstance(document, str) else document)
        else:
            target.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def base_files() -> dict[str, Any]:
    """A fresh deep copy of the valid base pack, to edit."""
    return copy.deepcopy(BASE)


@pytest.fixture
def write_pack(tmp_path: Path) -> PackWriter:
    """Write a pack (default: the valid base) under ``tmp_path/packs`` and return its directory."""

    def write(files: dict[str, Any] | None = None, name: str = "mini") -> Path:
        return write_pack_files(tmp_path / "packs", copy.deepcopy(BASE) if files is None else files, name)

    return write
