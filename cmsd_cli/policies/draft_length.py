"""Draft-length policies: how many tokens the draft proposes each round, and when it stops early.

The engine asks `budget()` before a round, calls `keep_drafting(step)` after every drafted token
(the token is proposed either way; a False stops the round there), and reports the outcome of the
verification with `observe(...)`. Policies see only confidences and counts, never models.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from cmsd_cli.policies.confidence import DEFAULT_CONFIDENCE_WEIGHT, StepConfidence


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _check_lengths(k_min: int, k_max: int) -> None:
    if k_min < 1:
        raise ValueError(f"k_min must be at least 1, got {k_min}")
    if k_max < k_min:
        raise ValueError(f"k_max ({k_max}) must be at least k_min ({k_min})")


@dataclass
class DraftPolicy:
    """Base class: a fixed budget and no early stop."""

    name = "base"
    confidence_weight: float = DEFAULT_CONFIDENCE_WEIGHT

    def reset(self) -> None:
        """Forget what earlier runs observed; called at the start of each generation."""

    def budget(self) -> int:
        raise NotImplementedError

    def keep_drafting(self, step: StepConfidence) -> bool:
        return True

    def observe(self, drafted: int, accepted: int, confidences: list[float]) -> None:
        """Update the policy with one round's outcome."""

    def params(self) -> dict:
        return {"policy": self.name, **asdict(self)}


@dataclass
class StaticPolicy(DraftPolicy):
    """A fixed number of draft tokens every round."""

    name = "static"
    draft_length: int = 4

    def __post_init__(self) -> None:
        if self.draft_length < 1:
            raise ValueError(f"draft_length must be at least 1, got {self.draft_length}")

    def budget(self) -> int:
        return self.draft_length


@dataclass
class HeuristicPolicy(DraftPolicy):
    """+2 draft tokens after a round where every draft token was accepted, -1 otherwise, within [k_min, k_max].

    This is the schedule of Hugging Face assisted generation's "heuristic" mode.
    """

    name = "heuristic"
    draft_length: int = 4
    k_min: int = 1
    k_max: int = 16

    def __post_init__(self) -> None:
        _check_lengths(self.k_min, self.k_max)
        self._current = self.draft_length

    def reset(self) -> None:
        self._current = min(self.k_max, max(self.k_min, self.draft_length))

    def budget(self) -> int:
        return self._current

    def observe(self, drafted: int, accepted: int, confidences: list[float]) -> None:
        if drafted == 0:
            return
        step = 2 if accepted == drafted else -1
        self._current = min(self.k_max, max(self.k_min, self._current + step))


@dataclass
class ThresholdPolicy(DraftPolicy):
    """Draft up to k_max tokens, stopping after a token whose draft probability is below p_min."""

    name = "threshold"
    k_max: int = 8
    p_min: float = 0.4

    def __post_init__(self) -> None:
        _check_lengths(1, self.k_max)
        _check_range("p_min", self.p_min, 0.0, 1.0)

    def budget(self) -> int:
        return self.k_max

    def keep_drafting(self, step: StepConfidence) -> bool:
        return step.top_probability >= self.p_min


@dataclass
class EntropyBoundPolicy(DraftPolicy):
    """Stop drafting when an entropy-based lower bound on the acceptance probability falls below `threshold`.

    The bound is 1 - sqrt(gamma * H(q)) with H in nats, after AdaEDL (Agrawal, Jeon and Lee, 2024,
    arXiv:2410.18351), whose experiments fix gamma at about 0.2. AdaEDL also adapts the threshold
    online from observed acceptance; this version keeps it fixed, and `cmsd calibrate` can tune it.
    """

    name = "entropy-bound"
    k_max: int = 8
    gamma: float = 0.2
    threshold: float = 0.5

    def __post_init__(self) -> None:
        _check_lengths(1, self.k_max)
        if self.gamma <= 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")
        _check_range("threshold", self.threshold, 0.0, 1.0)

    def budget(self) -> int:
        return self.k_max

    def acceptance_lower_bound(self, step: StepConfidence) -> float:
        return 1.0 - math.sqrt(self.gamma * max(0.0, step.entropy_nats))

    def keep_drafting(self, step: StepConfidence) -> bool:
        return self.acceptance_lower_bound(step) >= self.threshold


@dataclass
class CmsdPolicy(DraftPolicy):
    """Confidence-modulated drafting.

    Budget: k = clip(round(k_min + (k_max - k_min) * cbar), k_min, k_max), where cbar is an
    exponential moving average (weight `ema_decay` on the old value) of per-token draft confidence,
    or of per-token acceptance when `track="acceptance"`. Early stop: after a drafted token whose
    confidence is below `theta_draft`, the round ends (that token is still proposed).
    """

    name = "cmsd"
    k_min: int = 1
    k_max: int = 8
    theta_draft: float = 0.3
    ema_decay: float = 0.7
    initial: float = 0.5
    track: str = "confidence"

    def __post_init__(self) -> None:
        _check_lengths(self.k_min, self.k_max)
        _check_range("theta_draft", self.theta_draft, 0.0, 1.0)
        _check_range("ema_decay", self.ema_decay, 0.0, 1.0)
        _check_range("initial", self.initial, 0.0, 1.0)
        _check_range("confidence_weight", self.confidence_weight, 0.0, 1.0)
        if self.track not in ("confidence", "acceptance"):
            raise ValueError(f"track must be 'confidence' or 'acceptance', got {self.track!r}")
        self.average = self.initial

    def reset(self) -> None:
        self.average = self.initial

    def budget(self) -> int:
        raw = round(self.k_min + (self.k_max - self.k_min) * self.average)
        return min(self.k_max, max(self.k_min, raw))

    def keep_drafting(self, step: StepConfidence) -> bool:
        return step.confidence >= self.theta_draft

    def observe(self, drafted: int, accepted: int, confidences: list[float]) -> None:
        if self.track == "confidence":
            samples = confidences
        else:
            # One sample per drafted token: 1 for the accepted ones, then 0 for the first rejected.
            samples = [1.0] * accepted + ([0.0] if accepted < drafted else [])
        for value in samples:
            self.average = self.ema_decay * self.average + (1.0 - self.ema_decay) * value


POLICIES: dict[str, type[DraftPolicy]] = {
    StaticPolicy.name: StaticPolicy,
    HeuristicPolicy.name: HeuristicPolicy,
    ThresholdPolicy.name: ThresholdPolicy,
    EntropyBoundPolicy.name: EntropyBoundPolicy,
    CmsdPolicy.name: CmsdPolicy,
}
