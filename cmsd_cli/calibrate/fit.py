"""A monotone fit of acceptance probability against draft confidence, and how well it is calibrated.

The fit is isotonic regression by pool-adjacent-violators: the non-decreasing step function with
the least squared error to the observed verdicts (1 accepted, 0 rejected). It assumes only that a
more confident draft token is never less likely to be accepted. The curve is a step function, not
an interpolation, so a(c) takes only values that were fitted.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class AcceptanceCurve:
    """A non-decreasing step function a(c): `acceptance[i]` holds for confidences from `thresholds[i]` on.

    Confidences below the first threshold get the first value.
    """

    thresholds: tuple[float, ...]
    acceptance: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.thresholds or len(self.thresholds) != len(self.acceptance):
            raise ValueError("an acceptance curve needs one acceptance value per threshold, and at least one")
        if any(b <= a for a, b in zip(self.thresholds, self.thresholds[1:])):
            raise ValueError("acceptance curve thresholds must be strictly increasing")
        if any(b < a for a, b in zip(self.acceptance, self.acceptance[1:])):
            raise ValueError("acceptance curve values must be non-decreasing")
        if any(not 0.0 <= value <= 1.0 for value in self.acceptance):
            raise ValueError("acceptance curve values must be probabilities in [0, 1]")

    def __call__(self, confidence: float) -> float:
        index = bisect.bisect_right(self.thresholds, confidence) - 1
        return self.acceptance[max(index, 0)]

    def to_dict(self) -> dict:
        return {"thresholds": list(self.thresholds), "acceptance": list(self.acceptance)}

    @classmethod
    def from_dict(cls, data: dict) -> AcceptanceCurve:
        return cls(
            thresholds=tuple(float(value) for value in data["thresholds"]),
            acceptance=tuple(float(value) for value in data["acceptance"]),
        )


def _pooled_blocks(sums: Sequence[float], weights: Sequence[float]) -> list[tuple[float, float, int]]:
    """Pool neighbouring blocks whose means (sum / weight) are out of order until they no longer decrease.

    Returns blocks as (sum, weight, number of input points), in input order.
    """
    blocks: list[list[float]] = []
    for total, weight in zip(sums, weights):
        blocks.append([total, weight, 1])
        while len(blocks) >= 2 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, weight, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += weight
            blocks[-1][2] += count
    return [(total, weight, int(count)) for total, weight, count in blocks]


def pool_adjacent_violators(values: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """Return the non-decreasing sequence closest to `values` in weighted squared error."""
    if weights is None:
        weights = [1.0] * len(values)
    fitted: list[float] = []
    for total, weight, count in _pooled_blocks([v * w for v, w in zip(values, weights)], weights):
        fitted.extend([total / weight] * count)
    return fitted


def fit_isotonic(confidences: Sequence[float], verdicts: Sequence[int]) -> AcceptanceCurve:
    """Fit the non-decreasing acceptance curve with the least squared error to `verdicts`.

    Tokens with equal confidence share one value, and neighbouring steps with equal values are
    merged, so the curve's values strictly increase.
    """
    if len(confidences) != len(verdicts):
        raise ValueError(f"got {len(confidences)} confidences but {len(verdicts)} verdicts")
    if not confidences:
        raise ValueError("no judged draft tokens to fit")

    # One point per distinct confidence: the confidence, its accepted tokens and its token count.
    lows: list[float] = []
    accepted: list[int] = []
    counts: list[int] = []
    for confidence, verdict in sorted(zip(confidences, verdicts)):
        if lows and lows[-1] == confidence:
            accepted[-1] += verdict
            counts[-1] += 1
        else:
            lows.append(confidence)
            accepted.append(verdict)
            counts.append(1)

    thresholds: list[float] = []
    acceptance: list[float] = []
    start = 0
    for total, weight, count in _pooled_blocks(accepted, counts):
        value = total / weight
        if not acceptance or value > acceptance[-1]:
            thresholds.append(lows[start])
            acceptance.append(value)
        start += count
    return AcceptanceCurve(thresholds=tuple(thresholds), acceptance=tuple(acceptance))


def brier_score(curve: AcceptanceCurve, confidences: Sequence[float], verdicts: Sequence[int]) -> float:
    """Mean squared difference between the fitted acceptance probability and the verdict."""
    if not confidences:
        raise ValueError("no judged draft tokens to score")
    return sum((curve(c) - y) ** 2 for c, y in zip(confidences, verdicts)) / len(confidences)


def expected_calibration_error(
    curve: AcceptanceCurve, confidences: Sequence[float], verdicts: Sequence[int], bins: int = 10
) -> float:
    """Token-weighted mean gap between predicted and observed acceptance, over equal-width bins of prediction."""
    if not confidences:
        raise ValueError("no judged draft tokens to score")
    predicted_sum = [0.0] * bins
    observed_sum = [0.0] * bins
    counts = [0] * bins
    for c, y in zip(confidences, verdicts):
        p = curve(c)
        index = min(int(p * bins), bins - 1)
        predicted_sum[index] += p
        observed_sum[index] += y
        counts[index] += 1
    gap = sum(abs(observed_sum[i] - predicted_sum[i]) for i in range(bins) if counts[i])
    return gap / len(confidences)


@dataclass(frozen=True)
class CurveBin:
    """Observed and fitted acceptance of the judged tokens whose confidence is in [low, high)."""

    low: float
    high: float
    tokens: int
    observed: float | None  # None when the bin has no tokens
    fitted: float | None

    def to_dict(self) -> dict:
        return {
            "low": self.low,
            "high": self.high,
            "tokens": self.tokens,
            "observed": self.observed,
            "fitted": self.fitted,
        }


def binned_acceptance(
    curve: AcceptanceCurve, confidences: Sequence[float], verdicts: Sequence[int], bins: int = 10
) -> list[CurveBin]:
    """Observed and mean fitted acceptance in equal-width confidence bins; the last bin includes 1.0."""
    totals = [0.0] * bins
    fitted = [0.0] * bins
    counts = [0] * bins
    for c, y in zip(confidences, verdicts):
        index = min(int(c * bins), bins - 1)
        totals[index] += y
        fitted[index] += curve(c)
        counts[index] += 1
    return [
        CurveBin(
            low=i / bins,
            high=(i + 1) / bins,
            tokens=counts[i],
            observed=totals[i] / counts[i] if counts[i] else None,
            fitted=fitted[i] / counts[i] if counts[i] else None,
        )
        for i in range(bins)
    ]
