"""Executors that decode one prompt for each benchmark method: cmsd's engine or transformers assisted generation.

Each executor returns the new token ids and the counters the method exposes. Counters a method
does not expose are None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from cmsd_cli.bench.hf import AssistedGenerator
from cmsd_cli.bench.methods import ENGINE, HF, MethodSpec
from cmsd_cli.bench.results import BenchSettings, PromptLike
from cmsd_cli.engine import speculative_generate
from cmsd_cli.policies import parameter_names


def resolve_eos_ids(target: torch.nn.Module, tokenizer=None, eos_token_id=None) -> list[int]:
    """Return the EOS ids every method stops at: the given ones, else the target's generation config's, else the tokenizer's."""
    if eos_token_id is None:
        eos_token_id = getattr(getattr(target, "generation_config", None), "eos_token_id", None)
    if eos_token_id is None and tokenizer is not None:
        eos_token_id = tokenizer.eos_token_id
    if eos_token_id is None:
        return []
    if isinstance(eos_token_id, int):
        return [eos_token_id]
    return [int(token) for token in eos_token_id]


def _pad_token_id(target: torch.nn.Module, tokenizer, eos_ids: list[int]) -> int | None:
    pad = getattr(getattr(target, "generation_config", None), "pad_token_id", None)
    if pad is None and tokenizer is not None:
        pad = tokenizer.pad_token_id
    if pad is None and eos_ids:
        pad = eos_ids[0]
    return pad


def _only_known(params: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {name: value for name, value in params.items() if name in known}


class _EngineMethod:
    """Runs one cmsd method through `speculative_generate`."""

    def __init__(self, spec: MethodSpec, pair, settings: BenchSettings, eos_ids: list[int]) -> None:
        self.spec = spec
        self.pair = pair
        self.settings = settings
        self.eos_ids = eos_ids
        self.policy_params: dict[str, Any] = {}
        self.effective: dict[str, Any] | None = None
        self.verify_params = _only_known(settings.verify_params, parameter_names("verify", spec.verify))
        if spec.policy is not None:
            params = {"draft_length": settings.draft_length, **settings.policy_params}
            self.policy_params = _only_known(params, parameter_names("policy", spec.policy))

    def describe(self) -> dict[str, Any]:
        if self.spec.policy is None:
            return {"draft": None, "verify": "greedy"}
        settings = {
            "policy": self.spec.policy,
            "policy_params": self.policy_params,
            "verify": self.spec.verify,
            "verify_params": self.verify_params,
        }
        if self.effective is not None:
            settings["in_effect"] = self.effective
        return settings

    def run(self, prompt: PromptLike) -> dict[str, Any]:
        draft = self.pair.draft if self.spec.policy is not None else None
        result = speculative_generate(
            self.pair.target,
            draft,
            prompt.input_ids,
            max_new_tokens=self.settings.max_new_tokens,
            verify=self.spec.verify,
            policy=self.spec.policy or "static",
            policy_params=self.policy_params or None,
            verify_params=self.verify_params or None,
            eos_token_id=self.eos_ids or None,
            seed=self.settings.seed,
            stop_strings=list(prompt.stop_strings) or None,
            tokenizer=self.pair.tokenizer,
            vocab_size=getattr(self.pair, "vocab_size", None),
        )
        stats = result.stats
        if self.spec.policy is not None:
            # The engine reports every parameter in effect, defaults included.
            self.effective = {"policy": stats.get("policy"), "verify": stats.get("verify")}
        return {
            "tokens": result.tokens,
            "target_calls": stats["target_calls"],
            "draft_steps": stats["draft_steps"],
            "drafted": stats["drafted"],
            "accepted": stats["accepted"],
            "iterations": stats["iterations"],
            "rollbacks": stats["rollbacks"],
            "trace": result.trace,
        }


class _HFMethod:
    """Runs one transformers assisted-generation method."""

    def __init__(self, spec: MethodSpec, pair, settings: BenchSettings, eos_ids: list[int]) -> None:
        self.pair = pair
        self.settings = settings
        self.eos_ids = eos_ids
        self.pad_token_id = _pad_token_id(pair.target, pair.tokenizer, eos_ids)
        tokens = settings.hf_confidence_tokens if spec.confidence_stop else settings.draft_length
        self.generator = AssistedGenerator(
            spec,
            pair.target,
            pair.draft,
            num_assistant_tokens=tokens,
            confidence_threshold=settings.hf_confidence_threshold,
        )
        self.initial_settings = self.generator.assistant_settings()

    def describe(self) -> dict[str, Any]:
        return {"assistant": self.initial_settings}

    def run(self, prompt: PromptLike) -> dict[str, Any]:
        run = self.generator.generate(
            prompt.input_ids,
            max_new_tokens=self.settings.max_new_tokens,
            eos_ids=self.eos_ids,
            pad_token_id=self.pad_token_id,
            tokenizer=self.pair.tokenizer,
            stop_strings=prompt.stop_strings,
        )
        counters: dict[str, Any] = {
            "tokens": run.tokens,
            "target_calls": run.target_calls,
            "draft_steps": run.draft_steps,
            "drafted": None,
            "accepted": None,
            "iterations": None,
            "rollbacks": None,
            "trace": None,
        }
        if run.rounds is not None:
            counters["drafted"] = sum(drafted for drafted, _ in run.rounds)
            counters["accepted"] = sum(accepted for _, accepted in run.rounds)
            counters["iterations"] = len(run.rounds)
            counters["rollbacks"] = sum(1 for drafted, accepted in run.rounds if accepted < drafted)
        return counters


def make_method(spec: MethodSpec, pair, settings: BenchSettings, eos_ids: list[int]):
    if spec.kind == HF:
        return _HFMethod(spec, pair, settings, eos_ids)
    if spec.kind == ENGINE:
        return _EngineMethod(spec, pair, settings, eos_ids)
    raise ValueError(f"method {spec.name!r} has unknown kind {spec.kind!r}")
