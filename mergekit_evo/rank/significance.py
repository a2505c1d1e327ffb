"""Is the best merge really better? Paired comparisons of two models on the same held-out items.

Both models answer the same items, so the comparison is paired: per item, the difference of their scores. For 0/1
scores the exact McNemar test asks whether the items only one of them got right split evenly, which is what chance
would give; for any scores, a paired bootstrap over items gives an interval for the mean difference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 10_000


@dataclass(frozen=True)
class Comparison:
    """A against B on the same items: mean difference A - B, its 95% interval, and McNemar's p (0/1 scores only)."""

    n: int
    difference: float
    low: float
    high: float
    p_mcnemar: float | None
    a_only: int | None = None  # items A got right and B wrong (0/1 scores)
    b_only: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Two-sided exact McNemar p-value for paired 0/1 scores, and the two discordant counts (A only, B only).

    Under no difference each discordant item is A's or B's with probability 1/2, so the smaller count is binomial;
    the p-value doubles its lower tail (capped at 1), as the exact test does.
    """
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    a_only, b_only = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    n = a_only + b_only
    if n == 0:
        return 1.0, a_only, b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2**n
    return min(1.0, 2 * tail), a_only, b_only


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float, float]:
    """Mean of a - b over items, and the 2.5th and 97.5th percentiles of that mean over items resampled with
    replacement (the same resampled items for both models: that is what makes it paired)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // len(d))  # resample in chunks: a few MB at a time, whatever the item count
    means = np.concatenate(
        [
            d[rng.integers(0, len(d), size=(min(chunk, samples - start), len(d)))].mean(axis=1)
            for start in range(0, samples, chunk)
        ]
    )
    low, high = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(low), float(high)


def is_binary(*scores: np.ndarray) -> bool:
    return all(np.isin(np.asarray(s), (0.0, 1.0)).all() for s in scores)


def compare(a: np.ndarray, b: np.ndarray, seed: int = 0) -> Comparison:
    """A against B on the same items; McNemar only where both scored each item 0 or 1."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same items: {a.shape} against {b.shape}")
    difference, low, high = paired_bootstrap(a, b, seed)
    if is_binary(a, b):
        p, a_only, b_only = mcnemar_exact(a, b)
        return Comparison(len(a), difference, low, high, p, a_only, b_only)
    return Comparison(len(a), difference, low, high, None)
