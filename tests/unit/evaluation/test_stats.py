"""The statistics against values worked out by hand (closed forms noted beside each)."""

from __future__ import annotations

import math

import pytest
from talklike.evaluation.stats import (
    binomial_two_sided,
    bootstrap,
    mcnemar_exact,
    mean,
    pooled_perplexity,
    rounded_p,
    sign_test,
    two_proportion_p,
    wilson,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 60, 0.0, 0.060172),  # upper = z²/(n + z²) = 3.841459/63.841459
        (60, 60, 0.939828, 1.0),  # lower = n/(n + z²) = 60/63.841459
        (43, 60, 0.592327, 0.814932),  # roots of (p̂ − p)² = z²·p(1 − p)/n, p̂ = 43/60
        (1, 2, 0.094531, 0.905469),  # symmetric around ½
    ],
)
def test_wilson_interval(k: int, n: int, low: float, high: float) -> None:
    interval = wilson(k, n)
    assert interval.low == pytest.approx(low, abs=1e-6)
    assert interval.high == pytest.approx(high, abs=1e-6)


def test_wilson_with_nothing_measured_is_everything_and_bad_counts_are_refused() -> None:
    assert (wilson(0, 0).low, wilson(0, 0).high) == (0.0, 1.0)
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson(5, 4)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 9, 22 / 1024),  # 2·(C(10,0) + C(10,1))/2¹⁰
        (0, 5, 2 / 32),  # 2·(1/2⁵)
        (2, 6, 2 * (1 + 8 + 28) / 256),  # 2·P(X ≤ 2), X ~ Bin(8, ½)
        (3, 3, 1.0),  # 2·P(X ≤ 3) > 1, capped
        (0, 0, 1.0),  # no discordant pairs: no evidence
    ],
)
def test_exact_mcnemar(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p)
    assert mcnemar_exact(c, b) == pytest.approx(p)  # two-sided: symmetric


def test_sign_test_drops_ties() -> None:
    # 9 up, 1 down, 5 ties → as McNemar(1, 9)
    assert sign_test([0.2] * 9 + [-0.1] + [0.0] * 5) == pytest.approx(22 / 1024)
    assert sign_test([0.0, 0.0]) == 1.0
    assert binomial_two_sided(0, 1) == 1.0


def test_two_proportion_test() -> None:
    # 30/60 vs 45/60: pooled 0.625, SE = √(0.625·0.375·2/60) = 0.0884, z = 0.25/0.0884 = 2.828
    assert two_proportion_p(30, 60, 45, 60) == pytest.approx(0.0046777, abs=1e-6)
    assert two_proportion_p(30, 60, 30, 60) == pytest.approx(1.0)
    assert two_proportion_p(0, 60, 0, 60) == 1.0  # pooled rate 0: identical runs
    assert two_proportion_p(1, 0, 1, 2) == 1.0


def test_bootstrap_is_reproducible_and_brackets_the_statistic() -> None:
    values = [float(i % 7) for i in range(60)]
    first = bootstrap(values, mean)
    assert first == bootstrap(values, mean)  # fixed seed
    assert first is not None and first.low < mean(values) < first.high
    constant = bootstrap([0.5] * 30, mean)
    assert constant is not None and (constant.low, constant.high) == (0.5, 0.5)
    assert bootstrap([], mean) is None


def test_pooled_perplexity_weights_questions_by_tokens() -> None:
    # exp(−(−4·ln2 − 0)/(4 + 4)) = exp(ln2/2) = √2
    assert pooled_perplexity([(-4 * math.log(2), 4), (0.0, 4)]) == pytest.approx(math.sqrt(2))
    assert math.isinf(pooled_perplexity([]))
    interval = bootstrap([(-2.0, 2), (-4.0, 2), (-6.0, 2)], pooled_perplexity)
    assert interval is not None
    assert interval.low == pytest.approx(math.e) and interval.high == pytest.approx(
        math.exp(3)
    )  # all-one-question resamples


def test_rounded_p_keeps_tiny_values() -> None:
    assert rounded_p(1.862645149230957e-09) == 1.86e-09
    assert rounded_p(0.0214843) == 0.0215
