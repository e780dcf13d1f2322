"""Benchmark settings and results: one row per method, with per-input runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

TASKS = ("translate", "summarize")


class PromptLike(Protocol):
    input_ids: torch.Tensor
    stop_strings: Sequence[str]


@dataclass(frozen=True)
class BenchSettings:
    """Decoding settings shared by all methods in one benchmark.

    `draft_length` is the fixed draft length of "static" and "hf-static" and the starting length of
    "heuristic" and "hf-heuristic". `policy_params` and `verify_params` go to cmsd's policies and
    verification rules, each taking only the parameters it defines. "hf-confidence" uses
    transformers' own defaults unless set: up to `hf_confidence_tokens` draft tokens per round,
    stopping below `hf_confidence_threshold`.
    """

    max_new_tokens: int = 128
    draft_length: int = 4
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    verify_params: Mapping[str, Any] = field(default_factory=dict)
    hf_confidence_threshold: float = 0.4
    hf_confidence_tokens: int = 20
    eos_token_id: tuple[int, ...] | None = None
    seed: int | None = 0
    repeat: int = 1

    def __post_init__(self) -> None:
        if self.repeat < 1:
            raise ValueError(f"repeat must be at least 1, got {self.repeat}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.draft_length < 1:
            raise ValueError(f"draft_length must be at least 1, got {self.draft_length}")


@dataclass
class InputRun:
    """One method on one input: the median time over repeats, and the output and counters of the first repeat.

    Counters are None where the method does not expose them.
    """

    index: int
    seconds: float
    repeat_seconds: list[float]
    tokens: list[int]
    text: str | None
    finish_reason: str
    target_calls: int | None = None
    draft_steps: int | None = None
    drafted: int | None = None
    accepted: int | None = None
    iterations: int | None = None
    rollbacks: int | None = None
    trace: list | None = None  # engine IterationRecords, for plots


@dataclass
class MethodResult:
    """One row of the benchmark: a method's totals over all measured inputs.

    `seconds` is the sum over inputs of the per-input median time. Rates are over tokens and rounds
    of all inputs together. Quality fields stay None when they do not apply (no references, other
    task) and every figure is None when `error` is set.
    """

    name: str
    description: str
    lossless: bool
    settings: dict[str, Any]
    inputs: list[InputRun] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None
    new_tokens: int | None = None
    tokens_per_second: float | None = None
    speedup_vs_ar: float | None = None
    target_calls: int | None = None
    draft_steps: int | None = None
    mean_accepted: float | None = None
    acceptance_rate: float | None = None
    rollback_rate: float | None = None
    identical_to_ar: float | None = None
    consistency_bleu: float | None = None
    bleu: float | None = None
    chrf: float | None = None
    rouge1: float | None = None
    rouge2: float | None = None
    rougeL: float | None = None

    @property
    def texts(self) -> list[str]:
        return [(run.text or "").strip() for run in self.inputs]


@dataclass
class BenchResult:
    """All method rows of one benchmark, with the settings and metric signatures that reproduce it."""

    task: str
    methods: list[MethodResult]
    settings: BenchSettings
    eos_ids: list[int]
    inputs: int
    signatures: dict[str, str] = field(default_factory=dict)
    target_language: str | None = None

    def method(self, name: str) -> MethodResult:
        for result in self.methods:
            if result.name == name:
                return result
        raise KeyError(name)
