"""The moderation policy (thresholds, roles, action) and the pre-flight verdict.

OpenAI's training-file gate is undisclosed: a file is blocked when "too many examples"
violate its usage policies. So the policy is stricter than a backend's own ``flagged``
(per-category thresholds below 0.5 by default), checks every turn by default (system, user
and assistant — OpenAI checks them all), and the pre-flight verdict compares the share of
violating examples with a configurable limit and says what to do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from talklike.common.errors import InvalidArgument
from talklike.moderation.categories import check_thresholds

ROLES = ("system", "user", "assistant")
ACTIONS = ("drop", "annotate")
Action = Literal["drop", "annotate"]
PASS = "pass"
LIKELY_BLOCKED = "likely_blocked"


@dataclass(frozen=True)
class Policy:
    """What counts as a violation and what happens to it."""

    thresholds: dict[str, float]
    roles: tuple[str, ...]
    action: Action
    flagged_share_limit: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds,
            "roles": list(self.roles),
            "action": self.action,
            "flagged_share_limit": self.flagged_share_limit,
        }


def make_policy(
    thresholds: Mapping[str, float],
    roles: Iterable[str],
    action: str,
    flagged_share_limit: float | None,
    default_limit: float,
) -> Policy:
    """A checked policy; a bad field raises InvalidArgument with its path under ``policy``."""
    merged = check_thresholds(thresholds, "policy.thresholds")
    chosen: list[str] = []
    for i, role in enumerate(roles):
        if role not in ROLES:
            raise InvalidArgument(f"policy.roles[{i}]", f"must be one of {', '.join(ROLES)}, got {role!r}")
        if role not in chosen:
            chosen.append(role)
    act = action or "drop"
    if act not in ACTIONS:
        raise InvalidArgument("policy.action", f"must be drop or annotate, got {action!r}")
    limit = default_limit if flagged_share_limit is None else flagged_share_limit
    if not (math.isfinite(limit) and 0.0 <= limit <= 1.0):
        raise InvalidArgument("policy.flagged_share_limit", f"must be between 0 and 1, got {limit!r}")
    ordered = tuple(r for r in ROLES if r in chosen) if chosen else ROLES
    return Policy(merged, ordered, "annotate" if act == "annotate" else "drop", float(limit))


@dataclass(frozen=True)
class Preflight:
    """One file against OpenAI's gate."""

    examples: int
    flagged: int
    limit: float
    advice: str

    @property
    def share(self) -> float:
        return self.flagged / self.examples if self.examples else 0.0

    @property
    def verdict(self) -> str:
        return LIKELY_BLOCKED if self.share > self.limit else PASS

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "flagged": self.flagged,
            "flagged_share": round(self.share, 6),
            "flagged_share_limit": self.limit,
            "verdict": self.verdict,
            "advice": self.advice,
        }


def _pct(value: float) -> str:
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def preflight(
    examples: int, flagged: int, policy: Policy, *, output: bool, kept_flagged: int, out_name: str
) -> Preflight:
    """The verdict and the advice for the input file (``output`` False) or the moderated file."""
    limit = policy.flagged_share_limit
    share = flagged / examples if examples else 0.0
    partial = ""
    if policy.roles != ("system", "user", "assistant"):
        partial = (
            f" Only the {', '.join(policy.roles)} turns were checked; OpenAI checks every turn, "
            "so check them all before uploading."
        )
    if not output:
        if flagged == 0:
            advice = "No example violates the policy; moderation is not likely to block this file."
        elif share > limit:
            fix = (
                f"upload {out_name} instead: it leaves the {flagged} violating examples out."
                if policy.action == "drop"
                else "rerun with --action drop, or rewrite the examples listed in flagged.jsonl."
            )
            advice = (
                f"As it is, this file is likely to be blocked: {_pct(share)} of its examples ({flagged}) "
                f"violate the policy, over the limit of {_pct(limit)}. To fix it, {fix}"
            )
        else:
            advice = (
                f"{flagged} examples ({_pct(share)}) violate the policy, within the limit of {_pct(limit)}; "
                "the file is not likely to be blocked, but dropping them (--action drop) is safer."
            )
        return Preflight(examples, flagged, limit, advice + partial)
    if kept_flagged == 0:
        advice = f"{out_name} has no example that violates the policy: ready to upload."
    elif share > limit:
        advice = (
            f"{out_name} keeps {kept_flagged} violating examples (annotate), {_pct(share)} of it, over the "
            f"limit of {_pct(limit)}: it is likely to be blocked. Rerun with --action drop, or rewrite the "
            "examples listed in flagged.jsonl."
        )
    else:
        advice = (
            f"{out_name} keeps {kept_flagged} violating examples (annotate), within the limit of "
            f"{_pct(limit)}; consider --action drop for a clean file."
        )
    return Preflight(examples, flagged, limit, advice + partial)
