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


class CostMeter:
    """Timing samples of draft steps and target passes over 1..`max_tokens` tokens, taken one repeat at a time.

    Calibration takes its repeats between the input lines it decodes, so that on a shared machine
    the samples see the same load as the decoding they model.
    """

    def __init__(self, max_tokens: int) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.max_tokens = max_tokens
        self.verify_samples: list[list[float]] = [[] for _ in range(max_tokens)]
        self.draft_samples: list[float] = []
        self.context_tokens: list[int] = []

    def measure(
        self,
        target: torch.nn.Module,
        draft: torch.nn.Module,
        vocab_size: int,
        input_ids: torch.Tensor,
        sequence: Sequence[int],
    ) -> None:
        """Take one repeat: every target pass length once, then `max_tokens` draft steps.

        `input_ids` is the prompt (the encoder input for encoder-decoder models) and `sequence` the
        committed tokens the models continue from: the prompt plus some output for decoder-only
        models, the decoder start token plus some output otherwise. One untimed pass of each model
        warms up first.
        """
        sequence = list(sequence)
        if len(sequence) < 2:
            raise ValueError("cost measurement needs a context of at least two tokens")
        # Token values do not change the time of a pass, so the draft tokens are taken from the context.
        filler = [sequence[i % len(sequence)] for i in range(self.max_tokens)]

        with torch.inference_mode():
            target_runner = make_runner(target, vocab_size, input_ids, None)
            draft_runner = make_runner(draft, vocab_size, input_ids, None)
            target_runner.start(sequence)
            draft_runner.start(sequence)
            clock = _Clock(target_runner, draft_runner)

            _time_verify(target_runner, sequence, filler, self.max_tokens, clock)
            _time_draft(draft_runner, sequence, 1, clock)
            for tokens in range(1, self.max_tokens + 1):
                self.verify_samples[tokens - 1].append(_time_verify(target_runner, sequence, filler, tokens, clock))
            self.draft_samples.append(_time_draft(draft_runner, sequence, self.max_tokens, clock))
        self.context_tokens.append(len(sequence))

    @property
    def repeats(self) -> int:
        return len(self.draft_samples)

    def costs(self) -> CostModel:
        """Return the cost model of the median samples, with no round overhead.

        A pass over more tokens is never faster on average, so where noise makes the medians dip
        they are replaced by the closest non-decreasing sequence.
        """
        if not self.draft_samples:
            raise ValueError("no cost samples were taken")
        medians = [statistics.median(samples) for samples in self.verify_samples]
        return CostModel(draft_step=statistics.median(self.draft_samples), verify=tuple(pool_adjacent_violators(medians)))

    def samples(self) -> dict:
        """Return the raw samples and the verification medians before smoothing."""
        return {
            "repeats": self.repeats,
            "context_tokens": list(self.context_tokens),
            "draft_step_seconds": list(self.draft_samples),
            "verify_seconds": {str(m): list(values) for m, values in enumerate(self.verify_samples, start=1)},
            "verify_medians": {
                str(m): statistics.median(values) for m, values in enumerate(self.verify_samples, start=1) if values
            },
        }


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
    """Measure the draft step and the target pass over 1..`max_tokens` tokens, as medians of `repeats` repeats.

    All repeats use one context (see `CostMeter.measure`). Returns the cost model, with no round
    overhead, and the raw samples.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    meter = CostMeter(max_tokens)
    for _ in range(repeats):
        meter.measure(target, draft, vocab_size, input_ids, sequence)
    return meter.costs(), meter.samples()
