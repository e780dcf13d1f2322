"""Draft-length policies and verification rules, chosen by name."""

from __future__ import annotations

import dataclasses

from cmsd_cli.policies.confidence import StepConfidence, combine_confidence, step_confidence
from cmsd_cli.policies.draft_length import (
    POLICIES,
    CmsdPolicy,
    DraftPolicy,
    EntropyBoundPolicy,
    HeuristicPolicy,
    StaticPolicy,
    ThresholdPolicy,
)
from cmsd_cli.policies.verification import VERIFIERS, Verdict, Verifier

DEFAULT_POLICY = "cmsd"
DEFAULT_VERIFY = "greedy"


def _build(kind: str, registry: dict, name: str, params: dict | None):
    if name not in registry:
        known = ", ".join(registry)
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {known}")
    cls = registry[name]
    params = dict(params or {})
    accepted = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"{kind} {name!r} has no parameter {', '.join(unknown)}; its parameters are: {', '.join(sorted(accepted))}"
        )
    return cls(**params)


def make_policy(name: str, params: dict | None = None) -> DraftPolicy:
    """Build a draft-length policy by name, with only the parameters it defines."""
    return _build("policy", POLICIES, name, params)


def make_verifier(name: str, params: dict | None = None) -> Verifier:
    """Build a verification rule by name, with only the parameters it defines."""
    return _build("verification rule", VERIFIERS, name, params)


def parameter_names(kind: str, name: str) -> set[str]:
    registry = POLICIES if kind == "policy" else VERIFIERS
    return {f.name for f in dataclasses.fields(registry[name])}


__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_VERIFY",
    "POLICIES",
    "VERIFIERS",
    "CmsdPolicy",
    "DraftPolicy",
    "EntropyBoundPolicy",
    "HeuristicPolicy",
    "StaticPolicy",
    "StepConfidence",
    "ThresholdPolicy",
    "Verdict",
    "Verifier",
    "combine_confidence",
    "make_policy",
    "make_verifier",
    "parameter_names",
    "step_confidence",
]
