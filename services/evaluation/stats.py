"""The statistics the report puts beside each metric, written out so a reader can check them.

A benchmark of 30–100 questions measures rates with a few percentage points of noise either
way; a difference before vs after (or between two runs) means something only when it is
larger than that noise. Everything here is the textbook method, in plain Python (the
evaluation has no scipy): Wilson score intervals for shares, percentile bootstrap intervals
for means and perplexity (resampling questions, fixed seed, so a report is reproducible),
the exact McNemar test for a yes/no metric measured on the same questions before and after,
the sign test for a per-question number, and the pooled two-proportion z-test for the same
rate measured in two independent runs (``talklike eval compare``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

#: Two-sided 95 %: the standard normal quantile at 0.975.
Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240601

T = TypeVar("T")


@dataclass(frozen=True)
class Interval:
    """A 95 % interval [low, high]."""

    low: float
    high: float

    def as_list(self) -> list[float]:
        return [round(self.low, 4), round(self.high, 4)]


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of ``successes``/``n``; [0, 1] when there is nothing to measure.

    Unlike the plain p ± z·SE it never leaves 0..1 and stays meaningful at 0/n and n/n,
    which are common here (a base model that never signs: 0/60).
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    if n == 0:
        return Interval(0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(max(0.0, center - half), min(1.0, center + half))


def bootstrap(
    samples: Sequence[T],
    statistic: Callable[[Sequence[T]], float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval | None:
    """Percentile bootstrap interval of ``statistic`` over ``samples`` (one sample per question).

    Questions are drawn with replacement ``resamples`` times with a fixed seed, so the same
    answers give the same interval; None when there are no samples.
    """
    if not samples:
        return None
    rng = random.Random(seed)
    n = len(samples)
    values = sorted(statistic(rng.choices(samples, k=n)) for _ in range(resamples))
    return Interval(_percentile(values, 0.025), _percentile(values, 0.975))


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted values."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean; 0 for no values."""
    return sum(values) / len(values) if values else 0.0


def pooled_perplexity(scored: Sequence[tuple[float, int]]) -> float:
    """exp(−Σ log-prob / Σ tokens) over (total log-prob, token count) pairs, one per question."""
    tokens = sum(n for _, n in scored)
    return math.exp(-sum(lp for lp, _ in scored) / tokens) if tokens else math.inf


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of seeing ``k`` or fewer (or as extreme the other way) of ``n`` fair coin flips.

    2·P(X ≤ min(k, n−k)) for X ~ Binomial(n, ½), capped at 1; 1 for n = 0.
    """
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


def mcnemar_exact(only_before: int, only_after: int) -> float:
    """Exact McNemar p-value for a yes/no metric on the same questions before and after.

    Only discordant questions carry evidence: ``only_before`` were yes before and no after,
    ``only_after`` the reverse. Under "no change" each discordant question is a fair coin.
    """
    return binomial_two_sided(only_before, only_before + only_after)


def sign_test(differences: Sequence[float]) -> float:
    """Two-sided sign test of per-question differences (after − before); ties are dropped."""
    up = sum(d > 0 for d in differences)
    down = sum(d < 0 for d in differences)
    return binomial_two_sided(up, up + down)


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (two independent runs' rates).

    1 when either run has no answers or the pooled rate is 0 or 1 (both runs identical at
    the extreme: no evidence of a difference).
    """
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance == 0:
        return 1.0
    z = abs(k1 / n1 - k2 / n2) / math.sqrt(variance)
    return math.erfc(z / math.sqrt(2))


def rounded_p(value: float) -> float:
    """A p-value to three significant digits (a tiny one stays visible: 1.86e-09, not 0)."""
    return float(f"{value:.3g}")
