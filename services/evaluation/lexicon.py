"""The persona lexicon of a pack: what the benchmark counts as "talking like the persona".

Catchphrases, every placeholder value but the topics, and the words the pack's language slips
produce — the persona's own vocabulary — and the case forms of its topics (for topic relevance).
Read from the pack's files (format: services/generation/packs/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from talklike.common.errors import NotFound
from talklike.evaluation.scoring import PersonaLexicon
from talklike.packs.loader import BUILTIN_PACKS_DIR


def pack_dir(name: str, home: Path) -> Path:
    """A user pack under <home>/packs, else a built-in one."""
    for base in (home / "packs", BUILTIN_PACKS_DIR):
        if (base / name / "persona.yaml").is_file():
            return base / name
    raise NotFound("pack", name, "`talklike packs list` shows the packs")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def _topic_placeholder(persona: dict[str, Any]) -> str:
    return str(persona.get("topic_placeholder") or "tema")


def lexicon_for_pack(directory: Path) -> PersonaLexicon:
    """Markers: catchphrases, every placeholder value but the topics, and the slips' words.

    The topic placeholder's values are what an answer is about, not how the persona talks: an
    answer that names "důchody" has not taken on the persona by it (relevance counts topics).
    """
    persona = _yaml(directory / "persona.yaml") or {}
    placeholders = _yaml(directory / "placeholders.yaml") or {}
    topic_placeholder = _topic_placeholder(persona)
    phrases: list[str] = list(persona.get("catchphrases") or [])
    for name, values in (placeholders.get("placeholders") or {}).items():
        if name != topic_placeholder:
            phrases.extend(str(v) for v in values)
    for slip in (_yaml(directory / "slips.yaml") or {}).get("slips") or []:
        replacement = re.sub(r"\\\d|\\g<\w+>", " ", str(slip.get("replace", "")))
        phrases.extend(p for p in re.split(r"[,.!?;:]", replacement) if p.strip())
    return PersonaLexicon.build(
        str(persona.get("signature", "")),
        str(persona.get("language", "cs")),
        phrases,
        _declared_forms(persona, placeholders),
    )


def _declared_forms(persona: dict[str, Any], placeholders: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Topic value → its declared case forms, from placeholders.yaml ``declensions:``.

    The topic placeholder is persona.yaml's ``topic_placeholder`` (``tema`` when absent). A
    pack without declensions gives each topic no forms: relevance then uses the nominative.
    """
    declared = (placeholders.get("declensions") or {}).get(_topic_placeholder(persona)) or {}
    return {
        str(value): tuple(str(form) for form in (cases or {}).values())
        for value, cases in declared.items()
        if isinstance(cases, dict)
    }
