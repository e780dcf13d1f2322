"""What one decoding run returns: the new tokens, counters, and one record per iteration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Reasons a round of drafting ended, as stored in `IterationRecord.draft_stop`.
DRAFT_STOP_BUDGET = "budget"  # the policy's budget for this round was reached
DRAFT_STOP_LOW_CONFIDENCE = "low_confidence"  # the policy stopped early on an uncertain draft token
DRAFT_STOP_EOS = "eos"  # the draft proposed an end-of-sequence token
DRAFT_STOP_STOP_STRING = "stop_string"  # the draft proposed a token whose text contains a stop string
DRAFT_STOP_TOKEN_BUDGET = "token_budget"  # max_new_tokens leaves no room for more draft tokens
DRAFT_STOP_NONE = "none"  # no drafting this round (target-only decoding)


@dataclass
class IterationRecord:
    """One draft-then-verify round.

    `entropy` (normalised to [0, 1]), `margin` and `confidence` hold one value per drafted token.
    `relaxed_positions` lists the accepted draft positions whose token differs from the target's
    argmax, which only relaxed verification (`tolerant`, `cmsd`) can produce.
    """

    budget: int
    draft_length: int
    draft_tokens: list[int]
    entropy: list[float]
    margin: list[float]
    confidence: list[float]
    accepted: int
    emitted: list[int]
    rollback: bool
    draft_stop: str
    relaxed_positions: list[int] = field(default_factory=list)
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationResult:
    """The output of `speculative_generate`.

    `tokens` are the new token ids (prompt excluded; an end-of-sequence token is included when it was
    generated). `text` is the decoded output with any stop string and what follows removed, or None
    when no tokenizer was given. `finish_reason` is "eos", "length" or "stop_string".
    """

    tokens: list[int]
    text: str | None
    finish_reason: str
    stats: dict
    trace: list[IterationRecord]


def summarize_trace(trace: list[IterationRecord], new_tokens: int, seconds: float) -> dict:
    """Sum the per-iteration counters of one run into its `stats` dict.

    Acceptance is counted over tokens, never averaged over rounds, so `acceptance_rate` is
    accepted / drafted and cannot exceed 1.
    """
    iterations = len(trace)
    drafted = sum(record.draft_length for record in trace)
    accepted = sum(record.accepted for record in trace)
    rollbacks = sum(1 for record in trace if record.rollback)
    draft_seconds = sum(record.draft_seconds for record in trace)
    verify_seconds = sum(record.verify_seconds for record in trace)

    return {
        "iterations": iterations,
        "target_calls": iterations,
        "draft_steps": 0,  # filled in by the engine, which counts draft forward passes
        "drafted": drafted,
        "accepted": accepted,
        "rollbacks": rollbacks,
        "new_tokens": new_tokens,
        "acceptance_rate": accepted / drafted if drafted else 0.0,
        "mean_accepted": accepted / iterations if iterations else 0.0,
        "rollback_rate": rollbacks / iterations if iterations else 0.0,
        "seconds": seconds,
        "draft_seconds": draft_seconds,
        "verify_seconds": verify_seconds,
        "tokens_per_second": new_tokens / seconds if seconds > 0 else 0.0,
    }
