"""Confidence values, draft-length policies and relaxed verification rules."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import tiny_models as tm
from cmsd_cli import speculative_generate
from cmsd_cli.policies import (
    CmsdPolicy,
    EntropyBoundPolicy,
    HeuristicPolicy,
    StaticPolicy,
    ThresholdPolicy,
    make_policy,
    make_verifier,
    step_confidence,
)
from cmsd_cli.policies.confidence import combine_confidence, normalised_entropy, top2_margin
from cmsd_cli.policies.verification import CmsdVerifier, TolerantVerifier

# ---- confidence ---------------------------------------------------------------------------------


def test_uniform_distribution_has_zero_confidence():
    step = step_confidence(torch.full((50,), 1 / 50))
    assert step.entropy == pytest.approx(1.0, abs=1e-6)
    assert step.margin == pytest.approx(0.0, abs=1e-7)
    assert step.confidence == pytest.approx(0.0, abs=1e-6)


def test_one_hot_distribution_has_full_confidence():
    q = torch.zeros(50)
    q[7] = 1.0
    step = step_confidence(q)
    assert step.entropy == 0.0
    assert step.margin == 1.0
    assert step.confidence == 1.0


def test_confidence_values_on_hand_built_distribution():
    q = torch.tensor([0.5, 0.25, 0.125, 0.125])
    # H = 0.5 ln 2 + 0.25 ln 4 + 2 * 0.125 ln 8 = 1.75 ln 2; normalised by ln 4 = 2 ln 2.
    assert normalised_entropy(q) == pytest.approx(0.875, abs=1e-6)
    assert top2_margin(q) == pytest.approx(0.25)
    step = step_confidence(q, weight=0.5)
    assert step.confidence == pytest.approx(0.5 * 0.125 + 0.5 * 0.25, abs=1e-6)
    assert step_confidence(q, weight=1.0).confidence == pytest.approx(0.125, abs=1e-6)
    assert step_confidence(q, weight=0.0).confidence == pytest.approx(0.25, abs=1e-6)
    assert step.entropy_nats == pytest.approx(1.75 * math.log(2), abs=1e-6)


def test_confidence_weight_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="confidence weight"):
        combine_confidence(0.5, 0.5, weight=1.5)


# ---- policies -----------------------------------------------------------------------------------


def test_heuristic_policy_schedule():
    policy = HeuristicPolicy(draft_length=4, k_min=1, k_max=7)
    policy.reset()
    assert policy.budget() == 4
    policy.observe(drafted=4, accepted=4, confidences=[])
    assert policy.budget() == 6
    policy.observe(drafted=6, accepted=6, confidences=[])
    assert policy.budget() == 7  # capped at k_max
    policy.observe(drafted=7, accepted=2, confidences=[])
    assert policy.budget() == 6
    for _ in range(10):
        policy.observe(drafted=1, accepted=0, confidences=[])
    assert policy.budget() == 1  # floored at k_min


def test_cmsd_budget_follows_confidence_average():
    policy = CmsdPolicy(k_min=2, k_max=10, ema_decay=0.0, initial=0.5)
    assert policy.budget() == 6
    policy.observe(drafted=3, accepted=3, confidences=[1.0, 1.0, 1.0])
    assert policy.budget() == 10
    policy.observe(drafted=3, accepted=0, confidences=[0.2, 0.1, 0.0])
    assert policy.budget() == 2


def test_cmsd_budget_can_track_acceptance():
    policy = CmsdPolicy(k_min=1, k_max=9, ema_decay=0.0, track="acceptance")
    policy.observe(drafted=4, accepted=4, confidences=[0.0] * 4)
    assert policy.budget() == 9
    policy.observe(drafted=4, accepted=1, confidences=[1.0] * 4)
    assert policy.budget() == 1


def test_early_stop_rules():
    confident = step_confidence(torch.tensor([0.9, 0.05, 0.05]))
    unsure = step_confidence(torch.tensor([0.4, 0.35, 0.25]))
    cmsd = CmsdPolicy(theta_draft=0.5)
    assert cmsd.keep_drafting(confident)
    assert not cmsd.keep_drafting(unsure)
    threshold = ThresholdPolicy(p_min=0.5)
    assert threshold.keep_drafting(confident)
    assert not threshold.keep_drafting(unsure)
    bound = EntropyBoundPolicy(gamma=1.0, threshold=0.3)
    assert bound.acceptance_lower_bound(confident) == pytest.approx(1 - math.sqrt(confident.entropy_nats))
    assert bound.keep_drafting(confident)
    assert not bound.keep_drafting(unsure)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("nope", {}, "unknown policy 'nope'"),
        ("cmsd", {"k_min": 0}, "k_min must be at least 1"),
        ("cmsd", {"k_min": 5, "k_max": 3}, "k_max"),
        ("static", {"p_min": 0.3}, "has no parameter p_min"),
        ("threshold", {"p_min": 1.5}, "p_min must be in"),
    ],
)
def test_invalid_policy_settings_raise(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_policy(name, params)


# ---- every policy keeps greedy output exact -----------------------------------------------------

POLICY_SETTINGS = [
    ("static", {"draft_length": 3}),
    ("heuristic", {"draft_length": 2, "k_max": 8}),
    ("threshold", {"k_max": 6, "p_min": 0.05}),
    ("entropy-bound", {"k_max": 6, "gamma": 0.1, "threshold": 0.3}),
    ("cmsd", {"k_min": 1, "k_max": 8, "theta_draft": 0.02}),
]


@pytest.mark.parametrize("builder", [tm.llama, tm.t5])
@pytest.mark.parametrize("policy, params", POLICY_SETTINGS)
def test_every_policy_with_greedy_matches_target_only(builder, policy, params):
    target = builder(seed=0)
    draft = tm.perturbed_copy(target, noise=0.1)
    for seed in range(6):
        prompt = tm.random_prompt(2 + 3 * seed, seed)
        baseline = speculative_generate(target, None, prompt, max_new_tokens=24, eos_token_id=[])
        result = speculative_generate(
            target, draft, prompt, max_new_tokens=24, policy=policy, policy_params=params, eos_token_id=[]
        )
        assert result.tokens == baseline.tokens, f"{policy} prompt {seed}"
        assert result.stats["drafted"] > 0


# ---- cmsd adapts to the draft's uncertainty ----------------------------------------------------


class _ScaledDraft(torch.nn.Module):
    """The target's own logits times `sharpness`: 0 gives a flat draft, large values a peaked one."""

    def __init__(self, target, sharpness):
        super().__init__()
        self.inner = copy.deepcopy(target)
        self.config = self.inner.config
        self.generation_config = self.inner.generation_config
        self.sharpness = sharpness

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, **kwargs):
        output = self.inner(**kwargs)
        output.logits = output.logits * self.sharpness
        return output


def test_cmsd_drafts_fewer_tokens_when_draft_is_flat():
    target = tm.llama(seed=0)
    params = {"k_min": 1, "k_max": 8, "theta_draft": 0.3}
    lengths = {}
    for label, sharpness in (("flat", 0.05), ("peaked", 50.0)):
        draft = _ScaledDraft(target, sharpness)
        drafted = []
        for seed in range(4):
            result = speculative_generate(
                target, draft, tm.random_prompt(5, seed), max_new_tokens=30, policy="cmsd",
                policy_params=params, eos_token_id=[],
            )
            drafted += [r.draft_length for r in result.trace if r.draft_length > 0]
        lengths[label] = sum(drafted) / len(drafted)
    assert lengths["flat"] < 1.5
    assert lengths["peaked"] > 4.0
    assert lengths["flat"] < lengths["peaked"]


def test_trace_records_budget_and_draft_stop_reason():
    target = tm.llama(seed=0)
    draft = _ScaledDraft(target, 0.05)
    result = speculative_generate(
        target, draft, tm.random_prompt(5, 1), max_new_tokens=12, policy="cmsd",
        policy_params={"theta_draft": 0.3}, eos_token_id=[],
    )
    reasons = {r.draft_stop for r in result.trace}
    assert "low_confidence" in reasons
    assert all(r.budget >= r.draft_length for r in result.trace)
    final = speculative_generate(
        target, target, tm.random_prompt(5, 1), max_new_tokens=3, policy="static", draft_length=8, eos_token_id=[]
    )
    assert final.trace[0].draft_stop == "token_budget"


# ---- relaxed verification -----------------------------------------------------------------------


def _logits(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_tolerant_accepts_within_rank_and_gap():
    logits = _logits([[3.0, 2.5, 0.0, -1.0], [0.0, 5.0, 4.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    verdict = TolerantVerifier(beta=2, tau=1.0).verify([1, 2], logits)
    assert verdict.accepted == 2
    assert verdict.relaxed_positions == [0, 1]
    assert verdict.next_token == 0
    strict = TolerantVerifier(beta=2, tau=0.4).verify([1, 2], logits)
    assert strict.accepted == 0
    assert strict.next_token == 0
    beyond_rank = TolerantVerifier(beta=2, tau=10.0).verify([2, 2], logits)
    assert beyond_rank.accepted == 0


def test_cmsd_verifier_thresholds_grow_with_confidence():
    rule = CmsdVerifier(beta=5, tau=3.0)
    assert rule.thresholds(0.0) == (1, 0.0)
    assert rule.thresholds(1.0) == (5, 3.0)
    assert rule.thresholds(0.5) == (3, 1.5)


def test_relaxed_rules_reduce_to_greedy():
    target = tm.llama(seed=0)
    draft = tm.perturbed_copy(target, noise=0.3)
    for seed in range(6):
        prompt = tm.random_prompt(3 + seed, seed)
        greedy = speculative_generate(target, None, prompt, max_new_tokens=24, eos_token_id=[]).tokens
        tolerant = speculative_generate(
            target, draft, prompt, max_new_tokens=24, verify="tolerant", verify_params={"beta": 1, "tau": 0.0},
            eos_token_id=[],
        )
        assert tolerant.tokens == greedy
        # Confidence forced to 0: a weight of 1 on entropy with a flat draft gives c_t = 0.
        forced = speculative_generate(
            target, _ScaledDraft(target, 0.0), prompt, max_new_tokens=24, verify="cmsd",
            verify_params={"beta": 8, "tau": 10.0}, policy="static", draft_length=4, eos_token_id=[],
        )
        assert all(c == 0.0 for r in forced.trace for c in r.confidence)
        assert forced.tokens == greedy


def test_relaxed_rules_never_accept_outside_top_beta():
    target = tm.llama(seed=0)
    draft = tm.perturbed_copy(target, noise=0.3)
    beta = 3
    for verify in ("tolerant", "cmsd"):
        for seed in range(5):
            prompt = tm.random_prompt(4 + seed, seed)
            result = speculative_generate(
                target, draft, prompt, max_new_tokens=24, verify=verify,
                verify_params={"beta": beta, "tau": 100.0}, eos_token_id=[],
            )
            sequence = prompt[0].tolist()
            relaxed_seen = 0
            for record in result.trace:
                for position in range(record.accepted):
                    with torch.no_grad():
                        logits = target(torch.tensor([sequence])).logits[0, -1]
                    token = record.draft_tokens[position]
                    rank = int((logits > logits[token]).sum()) + 1
                    assert rank <= beta
                    if position in record.relaxed_positions:
                        assert token != int(logits.argmax())
                        relaxed_seen += 1
                    sequence.append(token)
                sequence.extend(record.emitted[record.accepted :])
            assert sequence[prompt.shape[1] :] == result.tokens


def test_make_verifier_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown verification rule 'fuzzy'"):
        make_verifier("fuzzy")
