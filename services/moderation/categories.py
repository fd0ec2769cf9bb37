"""The 13 moderation categories, named exactly as OpenAI's omni-moderation names them.

Using OpenAI's names (slashes included) everywhere — proto maps, report.json, thresholds on
the command line — means a report from the local backend and one from OpenAI read alike,
and a threshold written for one works for the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from talklike.common.errors import InvalidArgument

#: In OpenAI's order.
CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
CATEGORY_SET = frozenset(CATEGORIES)

#: Policy thresholds used when a request names none. Each is stricter (lower) than the 0.5 at which
#: a backend flags a category, because OpenAI's training-file gate is undisclosed: an example that
#: OpenAI's own ``flagged`` lets through can still count against the file. The categories with the
#: gravest content (minors, self-harm intent and instructions, threats) are the strictest.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "harassment": 0.4,
    "harassment/threatening": 0.3,
    "hate": 0.3,
    "hate/threatening": 0.2,
    "illicit": 0.4,
    "illicit/violent": 0.3,
    "self-harm": 0.3,
    "self-harm/intent": 0.2,
    "self-harm/instructions": 0.2,
    "sexual": 0.4,
    "sexual/minors": 0.1,
    "violence": 0.4,
    "violence/graphic": 0.3,
}

#: Score at which a backend's own ``categories`` flag is set (the local backend; OpenAI decides its own).
FLAG_AT = 0.5


def check_thresholds(raw: Mapping[str, float], field_name: str = "thresholds") -> dict[str, float]:
    """The default thresholds with ``raw`` over them; an unknown name or a value outside [0, 1] is refused.

    The field path in the error is the request's (``policy.thresholds["hate"]``), so a caller can
    tell which entry to fix.
    """
    merged = dict(DEFAULT_THRESHOLDS)
    for name, value in raw.items():
        at = f'{field_name}["{name}"]'
        if name not in CATEGORY_SET:
            raise InvalidArgument(
                at, f"unknown category {name!r}; the categories are {', '.join(CATEGORIES)}"
            )
        if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
            raise InvalidArgument(at, f"a threshold must be between 0 and 1, got {value!r}")
        merged[name] = float(value)
    return merged


@dataclass(frozen=True)
class Scores:
    """One text's verdict from a backend: a score for every category and the backend's own flags."""

    scores: dict[str, float]
    flags: dict[str, bool]
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def flagged(self) -> bool:
        """True when the backend flags any category (OpenAI's ``flagged``)."""
        return any(self.flags.values())

    def violations(self, thresholds: Mapping[str, float]) -> list[str]:
        """Categories whose score reaches their threshold, in OpenAI's order."""
        return [name for name in CATEGORIES if self.scores.get(name, 0.0) >= thresholds[name]]

    @staticmethod
    def of(
        scores: Mapping[str, float], flags: Mapping[str, bool] | None = None, reasons: tuple[str, ...] = ()
    ) -> Scores:
        """Complete a partial mapping: missing categories score 0; flags default to score >= FLAG_AT."""
        full = {name: min(1.0, max(0.0, float(scores.get(name, 0.0) or 0.0))) for name in CATEGORIES}
        given = flags or {}
        full_flags = {name: bool(given.get(name, full[name] >= FLAG_AT)) for name in CATEGORIES}
        return Scores(full, full_flags, reasons)
