"""Speculative sampling must follow the target's own sampling distribution (a chi-square test)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

import tiny_models as tm
from cmsd_cli import speculative_generate
from cmsd_cli.engine.processors import build_warpers
from cmsd_cli.policies.verification import SampleVerifier, Verdict, _sample

SAMPLES = 1500
TEMPERATURE = 0.7
TOP_K = 6


class _ResampleFromTargetVerifier(SampleVerifier):
    """A deliberately wrong rule: on rejection it samples from p instead of norm(max(0, p - q))."""

    def verify(self, draft_tokens, target_logits, *, target_probs=None, draft_probs=None, generator=None, **_):
        for position, token in enumerate(draft_tokens):
            p, q = target_probs[position], draft_probs[position]
            u = float(torch.rand((), generator=generator))
            if u * float(q[token]) < float(p[token]):
                continue
            return Verdict(accepted=position, next_token=_sample(p, generator))
        return Verdict(accepted=len(draft_tokens), next_token=_sample(target_probs[len(draft_tokens)], generator))


def _first_token_distribution(target, prompt, temperature, top_k, top_p):
    warpers = build_warpers(temperature, top_k, top_p)
    with torch.no_grad():
        logits = target(prompt).logits[:, -1].float()
    return torch.softmax(warpers(prompt, logits), dim=-1)[0]


def _first_token_counts(target, draft, prompt, verify, top_k, top_p):
    counts = torch.zeros(tm.VOCAB_SIZE)
    for seed in range(SAMPLES):
        result = speculative_generate(
            target, draft, prompt, max_new_tokens=2, verify=verify, draft_length=1,
            temperature=TEMPERATURE, top_k=top_k, top_p=top_p, seed=seed, eos_token_id=[],
        )
        counts[result.tokens[0]] += 1
    return counts


def _chi_square_pvalue(counts: torch.Tensor, probabilities: torch.Tensor) -> float:
    support = probabilities > 0
    assert counts[~support].sum() == 0, "sampled a token the target gives zero probability"
    expected = probabilities[support].double()
    expected = expected / expected.sum() * counts.sum()
    return float(chisquare(counts[support].double().numpy(), expected.numpy()).pvalue)


@pytest.fixture(scope="module")
def models():
    target = tm.llama(layers=2, hidden=32, heads=2, seed=0)
    # A noisy copy: its top-k set overlaps the target's but its probabilities differ, so about a third
    # of first tokens are rejected and the residual distribution norm(max(0, p - q)) matters. (A draft
    # whose top-k set were disjoint from the target's would make the residual equal p, and the test
    # could not tell the two rules apart.)
    draft = tm.perturbed_copy(target, noise=0.3, seed=1)
    return target, draft


@pytest.mark.parametrize("top_k, top_p", [(TOP_K, None), (None, 0.5)])
def test_sample_verification_matches_target_distribution(models, top_k, top_p):
    target, draft = models
    prompt = tm.random_prompt(4, 11)
    probabilities = _first_token_distribution(target, prompt, TEMPERATURE, top_k, top_p)
    counts = _first_token_counts(target, draft, prompt, "sample", top_k, top_p)
    assert _chi_square_pvalue(counts, probabilities) > 0.001


def test_chi_square_test_detects_resampling_from_target(models):
    """The statistical test has the power to catch the classic bug of resampling from p on rejection."""
    target, draft = models
    prompt = tm.random_prompt(4, 11)
    probabilities = _first_token_distribution(target, prompt, TEMPERATURE, TOP_K, None)
    counts = _first_token_counts(target, draft, prompt, _ResampleFromTargetVerifier(), TOP_K, None)
    assert _chi_square_pvalue(counts, probabilities) < 1e-6


def test_target_only_sampling_matches_target_distribution(models):
    target, _ = models
    prompt = tm.random_prompt(4, 11)
    probabilities = _first_token_distribution(target, prompt, TEMPERATURE, TOP_K, None)
    counts = _first_token_counts(target, None, prompt, "sample", TOP_K, None)
    assert _chi_square_pvalue(counts, probabilities) > 0.001


def test_second_token_distribution_matches_after_accepted_first(models):
    """Joint distribution of the first two tokens, with a draft of two tokens per round."""
    target, draft = models
    prompt = tm.random_prompt(3, 12)
    warpers = build_warpers(TEMPERATURE, TOP_K, None)
    with torch.no_grad():
        first = torch.softmax(warpers(prompt, target(prompt).logits[:, -1].float()), dim=-1)[0]
        joint = torch.zeros(tm.VOCAB_SIZE, tm.VOCAB_SIZE)
        for token in torch.nonzero(first).flatten().tolist():
            extended = torch.cat([prompt, torch.tensor([[token]])], dim=1)
            second = torch.softmax(warpers(extended, target(extended).logits[:, -1].float()), dim=-1)[0]
            joint[token] = first[token] * second

    counts = torch.zeros(tm.VOCAB_SIZE, tm.VOCAB_SIZE)
    for seed in range(SAMPLES):
        result = speculative_generate(
            target, draft, prompt, max_new_tokens=3, verify="sample", draft_length=2,
            temperature=TEMPERATURE, top_k=TOP_K, seed=seed, eos_token_id=[],
        )
        counts[result.tokens[0], result.tokens[1]] += 1

    flat_counts, flat_joint = counts.flatten(), joint.flatten()
    support = flat_joint > 0
    assert flat_counts[~support].sum() == 0
    # Pool cells whose expected count is below 5 into one, as the chi-square approximation needs.
    expected = flat_joint[support].double()
    expected = expected / expected.sum() * SAMPLES
    observed = flat_counts[support].double()
    small = expected < 5
    pooled_expected, pooled_observed = expected[~small], observed[~small]
    if small.any():
        pooled_expected = torch.cat([pooled_expected, expected[small].sum().reshape(1)])
        pooled_observed = torch.cat([pooled_observed, observed[small].sum().reshape(1)])
    assert float(chisquare(pooled_observed.numpy(), pooled_expected.numpy()).pvalue) > 0.001


def test_same_seed_gives_same_sample():
    target = tm.llama(seed=0)
    draft = tm.perturbed_copy(target, noise=0.3)
    runs = [
        speculative_generate(target, draft, tm.random_prompt(5, 0), max_new_tokens=16, verify="sample", seed=42, eos_token_id=[]).tokens
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
