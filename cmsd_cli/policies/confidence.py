"""Confidence of one draft step, from the draft model's next-token distribution q.

- normalised entropy  h = H(q) / log |V|, in [0, 1]
- margin              m = q(first) - q(second), in [0, 1]
- confidence          c = w * (1 - h) + (1 - w) * m, with w in [0, 1]

A uniform q gives h = 1 and m = 0, so c = 0; a one-hot q gives h = 0 and m = 1, so c = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEFAULT_CONFIDENCE_WEIGHT = 0.5


@dataclass(frozen=True)
class StepConfidence:
    entropy: float  # normalised to [0, 1]
    margin: float
    confidence: float
    top_probability: float
    entropy_nats: float  # unnormalised, for policies that bound acceptance with it


def normalised_entropy(probabilities: torch.Tensor) -> float:
    """H(q) / log |V| for one distribution over the whole vocabulary."""
    vocab_size = probabilities.shape[-1]
    if vocab_size < 2:
        return 0.0
    return _entropy_nats(probabilities) / math.log(vocab_size)


def _entropy_nats(probabilities: torch.Tensor) -> float:
    # xlogy gives 0 * log 0 = 0 for tokens with zero probability.
    return float(-torch.special.xlogy(probabilities, probabilities).sum())


def top2_margin(probabilities: torch.Tensor) -> float:
    top = torch.topk(probabilities, k=min(2, probabilities.shape[-1])).values
    if top.numel() < 2:
        return float(top[0])
    return float(top[0] - top[1])


def combine_confidence(entropy: float, margin: float, weight: float = DEFAULT_CONFIDENCE_WEIGHT) -> float:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"confidence weight must be in [0, 1], got {weight}")
    value = weight * (1.0 - entropy) + (1.0 - weight) * margin
    # Rounding in the entropy sum can leave values a hair outside [0, 1].
    return min(1.0, max(0.0, value))


def step_confidence(probabilities: torch.Tensor, weight: float = DEFAULT_CONFIDENCE_WEIGHT) -> StepConfidence:
    """Entropy, margin and confidence of one draft distribution (a 1-D tensor that sums to 1)."""
    probabilities = probabilities.float()
    vocab_size = probabilities.shape[-1]
    entropy_nats = _entropy_nats(probabilities)
    entropy = entropy_nats / math.log(vocab_size) if vocab_size > 1 else 0.0
    entropy = min(1.0, max(0.0, entropy))

    top = torch.topk(probabilities, k=min(2, vocab_size)).values
    top_probability = float(top[0])
    margin = float(top[0] - top[1]) if top.numel() > 1 else top_probability

    return StepConfidence(
        entropy=entropy,
        margin=margin,
        confidence=combine_confidence(entropy, margin, weight),
        top_probability=top_probability,
        entropy_nats=entropy_nats,
    )
