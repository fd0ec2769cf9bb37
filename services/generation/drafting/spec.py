"""What a draft is asked to make: the validated request, and what it gives back.

``build_spec`` turns a DraftPack request into a ``DraftSpec`` or refuses the first bad field;
``check_target`` refuses a name that is taken before any LLM call is paid for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talklike.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from talklike.generation.drafting.gates import MAX_TEMPLATES, MIN_TEMPLATES, default_style_count
from talklike.generation.llm import LlmConfig
from talklike.packs.loader import BUILTIN_PACKS_DIR
from talklike.packs.schema import LANGUAGE_RE, NAME_RE

if TYPE_CHECKING:
    from talklike.generation.drafting.report import DraftFigures

MAX_EXAMPLES_BYTES = 64 * 1024
#: Sample answers from ``--examples`` put into prompts: a few short ones steer a small model
#: without drowning its context.
MAX_PROMPT_EXAMPLES = 4
MAX_EXAMPLE_CHARS = 300
MAX_STYLES = 8
MAX_MALFORMED_RETRIES = 10
DEFAULT_MALFORMED_RETRIES = 2


class DraftFailed(FailedPrecondition):
    """The draft stopped; nothing was written to the packs directory. ``report_path`` says why in full."""

    def __init__(self, message: str, report_path: Path) -> None:
        super().__init__(message)
        self.report_path = report_path


@dataclass(frozen=True)
class DraftSpec:
    """A validated DraftPack request."""

    name: str
    description: str
    template_count: int
    llm: LlmConfig
    examples: tuple[str, ...] = ()
    language: str = ""
    style_count: int = 0
    malformed_retries: int = DEFAULT_MALFORMED_RETRIES
    replace: bool = False
    fresh: bool = False
    satire: bool = False


def split_examples(text: str) -> tuple[str, ...]:
    """Sample answers from an examples file: blank-line separated (or one per line), a few, short."""
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    if len(blocks) <= 1:
        blocks = [line for line in text.splitlines() if line.strip()]
    out = []
    for block in blocks[:MAX_PROMPT_EXAMPLES]:
        one = " ".join(block.split())
        if len(one) > MAX_EXAMPLE_CHARS:
            one = one[:MAX_EXAMPLE_CHARS].rsplit(" ", 1)[0] + " ..."
        out.append(one)
    return tuple(out)


def build_spec(
    *,
    name: str,
    description: str,
    template_count: int,
    llm: Callable[[], LlmConfig],
    examples: str = "",
    language: str = "",
    style_count: int = 0,
    malformed_retries: int | None = None,
    replace: bool = False,
    fresh: bool = False,
    satire: bool = False,
) -> DraftSpec:
    """A DraftSpec, or InvalidArgument naming the first bad field (``llm`` is checked last)."""
    if not name or not NAME_RE.match(name) or len(name) > 64:
        raise InvalidArgument(
            "name", f"{name!r} is not a pack name (lower-case letters, digits, - and _, at most 64)"
        )
    if not description.strip():
        raise InvalidArgument("description", "say who the persona is, its language and its tone")
    if not MIN_TEMPLATES <= template_count <= MAX_TEMPLATES:
        raise InvalidArgument(
            "template_count",
            f"must be between {MIN_TEMPLATES} and {MAX_TEMPLATES:,}, got {template_count}",
        )
    if len(examples.encode("utf-8")) > MAX_EXAMPLES_BYTES:
        raise InvalidArgument("examples", f"must be at most {MAX_EXAMPLES_BYTES // 1024} KiB of text")
    language = language.strip().lower().replace("_", "-")
    if language and not LANGUAGE_RE.match(language):
        raise InvalidArgument("language", f"{language!r} is not a BCP 47 tag such as en or cs")
    if style_count and not 2 <= style_count <= MAX_STYLES:
        raise InvalidArgument("style_count", f"must be between 2 and {MAX_STYLES} (0 = automatic)")
    retries = DEFAULT_MALFORMED_RETRIES if malformed_retries is None else malformed_retries
    if not 0 <= retries <= MAX_MALFORMED_RETRIES:
        raise InvalidArgument("malformed_retries", f"must be between 0 and {MAX_MALFORMED_RETRIES}")
    return DraftSpec(
        name=name,
        description=description.strip(),
        template_count=template_count,
        llm=llm(),
        examples=split_examples(examples),
        language=language,
        style_count=style_count or default_style_count(template_count),
        malformed_retries=retries,
        replace=replace,
        fresh=fresh,
        satire=satire,
    )


def check_target(home: Path, name: str, replace: bool) -> None:
    """AlreadyExists when the pack name is taken (a built-in one always; a user one without replace)."""
    if (BUILTIN_PACKS_DIR / name).is_dir():
        raise AlreadyExists(f"{name!r} is a built-in pack; choose another name for the draft")
    target = home / "packs" / name
    if target.exists() and not replace:
        raise AlreadyExists(
            f"pack {name!r} already exists in {target.parent}; choose another name or replace it"
        )


@dataclass
class DraftResult:
    """A published draft."""

    name: str
    pack_path: Path
    draft_dir: Path
    report_path: Path
    figures: DraftFigures
    #: report.json's content, as written.
    report: dict[str, Any]
    elapsed_s: float
