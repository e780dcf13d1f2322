"""Costs of a draft step and of a target verification on this machine, measured with the engine's runners."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cmsd_cli.calibrate.fit import pool_adjacent_violators
from cmsd_cli.engine.runners import ModelRunner, make_runner
from cmsd_cli.policies import step_confidence


@dataclass(frozen=True)
class CostModel:
    """Seconds per draft step, per target pass over m tokens, and per round outside both.

    `verify[m - 1]` is the time of one target forward pass over m tokens (m - 1 draft tokens plus
    the last committed token), with the argmax that greedy verification takes of it.
    """

    draft_step: float
    verify: tuple[float, ...]
    round_overhead: float = 0.0

    def __post_init__(self) -> None:
        if not self.verify:
            raise ValueError("a cost model needs the verification time of at least one token")
        if self.draft_step < 0 or self.round_overhead < 0 or any(value <= 0 for value in self.verify):
            raise ValueError("cost model times must be positive (the round overhead and draft step may be 0)")

    @property
    def max_draft_length(self) -> int:
        """The maximum draft length whose verification time was measured."""
        return len(self.verify) - 1

    def verify_seconds(self, tokens: int) -> float:
        if not 1 <= tokens <= len(self.verify):
            raise ValueError(f"no verification time measured for {tokens} tokens (measured 1 to {len(self.verify)})")
        return self.verify[tokens - 1]

    def round_seconds(self, drafted: int) -> float:
        """Expected wall-clock seconds of one round that drafts `drafted` tokens."""
        return drafted * self.draft_step + self.verify_seconds(drafted + 1) + self.round_overhead

    def to_dict(self) -> dict:
        return {
            "draft_step_seconds": self.draft_step,
            "verify_seconds": {str(m): seconds for m, seconds in enumerate(self.verify, start=1)},
            "round_overhead_seconds": self.round_overhead,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CostModel:
        verify = data["verify_seconds"]
        ordered = [float(verify[str(m)]) for m in range(1, len(verify) + 1)]
        return cls(
            draft_step=float(data["draft_step_seconds"]),
            verify=tuple(ordered),
            round_overhead=float(data.get("round_overhead_seconds", 0.0)),
        )


class _Clock:
    """Wall-clock seconds, waiting for queued CUDA work first so it is timed where it runs."""

    def __init__(self, *runners: ModelRunner) -> None:
        self.sync = any(runner.device.type == "cuda" for runner in runners)

    def now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()


def _time_verify(runner: ModelRunner, sequence: list[int], filler: list[int], tokens: int, clock: _Clock) -> float:
    """Time one target pass over the last committed token and `tokens - 1` draft tokens, then roll it back."""
    start = clock.now()
    logits = runner.feed(runner.pending(sequence) + filler[: tokens - 1], logits_to_keep=tokens)
    logits.argmax(dim=-1).tolist()
    seconds = clock.now() - start
    runner.sync(sequence[:-1])
    return seconds


def _time_draft(runner: ModelRunner, sequence: list[int], steps: int, clock: _Clock) -> float:
    """Time `steps` draft steps as the engine drafts (forward, softmax, confidence, argmax); return seconds per step."""
    start = clock.now()
    tokens = runner.pending(sequence)
    for _ in range(steps):
        logits = runner.feed(tokens, logits_to_keep=1)[0]
        q = torch.softmax(logits, dim=-1)
        step_confidence(q)
        tokens = [int(q.argmax())]
    seconds = clock.now() - start
    runner.sync(sequence[:-1])
    return seconds / steps


def measure_costs(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    vocab_size: int,
    input_ids: torch.Tensor,
    sequence: Sequence[int],
    *,
    max_tokens: int,
    repeats: int,
) -> tuple[CostModel, dict]:
    """Measure the draft step and the target pass over 1..`max_tokens` tokens, as medians of `repeats` runs.

    `input_ids` is the prompt (the encoder input for encoder-decoder models) and `sequence` the
    committed tokens the models continue from: the prompt plus some output for decoder-only models,
    the decoder start token plus some output otherwise. One untimed run of everything warms up
    first. Passes over different lengths alternate within each repeat, so a slow spell on a shared
    machine spreads over all lengths instead of skewing one. Returns the cost model (with no round
    overhead) and the raw samples with their medians.
    """
    if max_tokens < 1 or repeats < 1:
        raise ValueError("max_tokens and repeats must be at least 1")
    sequence = list(sequence)
    if len(sequence) < 2:
        raise ValueError("cost measurement needs a context of at least two tokens")
    # Token values do not change the time of a pass, so the draft tokens are taken from the context.
    filler = [sequence[i % len(sequence)] for i in range(max_tokens)]

    with torch.inference_mode():
        target_runner = make_runner(target, vocab_size, input_ids, None)
        draft_runner = make_runner(draft, vocab_size, input_ids, None)
        target_runner.start(sequence)
        draft_runner.start(sequence)
        clock = _Clock(target_runner, draft_runner)

        for tokens in range(1, max_tokens + 1):
            _time_verify(target_runner, sequence, filler, tokens, clock)
        _time_draft(draft_runner, sequence, max_tokens, clock)

        verify_samples: list[list[float]] = [[] for _ in range(max_tokens)]
        draft_samples: list[float] = []
        for _ in range(repeats):
            for tokens in range(1, max_tokens + 1):
                verify_samples[tokens - 1].append(_time_verify(target_runner, sequence, filler, tokens, clock))
            draft_samples.append(_time_draft(draft_runner, sequence, max_tokens, clock))

    # A pass over more tokens is never faster on average, so noise that makes the medians dip is
    # smoothed out by the closest non-decreasing sequence.
    medians = [statistics.median(samples) for samples in verify_samples]
    costs = CostModel(draft_step=statistics.median(draft_samples), verify=tuple(pool_adjacent_violators(medians)))
    samples = {
        "context_tokens": len(sequence),
        "repeats": repeats,
        "draft_step_seconds": draft_samples,
        "verify_seconds": {str(m): values for m, values in enumerate(verify_samples, start=1)},
        "verify_medians": {str(m): value for m, value in enumerate(medians, start=1)},
    }
    return costs, samples
