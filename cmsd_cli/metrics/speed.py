"""Speed counters: tokens per second and speedup over a baseline measured in the same run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def tokens_per_second(tokens: int, seconds: float) -> float | None:
    """Return `tokens / seconds`, or None when no time was measured."""
    if seconds <= 0:
        return None
    return tokens / seconds


def speedup(baseline_seconds: float | None, seconds: float | None) -> float | None:
    """Return how many times faster a method is than the baseline: baseline seconds / method seconds.

    Both times must come from the same run on the same inputs. None when either time is missing or zero.
    """
    if baseline_seconds is None or seconds is None or seconds <= 0 or baseline_seconds <= 0:
        return None
    return baseline_seconds / seconds


def median_seconds(samples: Sequence[float]) -> float:
    """Return the median of repeated timings of one run, which resists one-off stalls better than the mean."""
    if not samples:
        raise ValueError("median_seconds needs at least one timing.")
    return statistics.median(samples)
