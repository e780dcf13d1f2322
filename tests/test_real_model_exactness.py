"""Lossless modes on the real offline pair: Gemma 3 270M (float32) with its int8 self-draft."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from cmsd_cli import speculative_generate
from cmsd_cli.engine.processors import build_warpers
from cmsd_cli.models import load_pair
from cmsd_cli.tasks import build_prompt

SENTENCES = [
    "The museum reopened on Saturday after two years of repairs.",
    "Two sets of lights so close to one another: intentional or just a silly error?",
    "The city council approved the new budget on Tuesday evening.",
    "Police said the driver had been travelling far too fast.",
]


@pytest.fixture(scope="module")
def pair():
    return load_pair(device="cpu")


def _prompt(pair, sentence):
    return build_prompt("translate", pair, sentence, src="en", tgt="de")


def _greedy_matches(pair, sentences, max_new_tokens, policy, policy_params=None):
    for sentence in sentences:
        prompt = _prompt(pair, sentence)
        common = dict(max_new_tokens=max_new_tokens, stop_strings=prompt.stop_strings, tokenizer=pair.tokenizer)
        baseline = speculative_generate(pair.target, None, prompt.input_ids, **common)
        result = speculative_generate(
            pair.target, pair.draft, prompt.input_ids, policy=policy, policy_params=policy_params, **common
        )
        assert result.tokens == baseline.tokens, sentence
        assert result.text == baseline.text
        assert result.stats["drafted"] > 0


@pytest.mark.slow
@pytest.mark.ci
def test_real_greedy_cmsd_matches_target_only(pair):
    _greedy_matches(pair, SENTENCES[:2], max_new_tokens=24, policy="cmsd")


@pytest.mark.slow
@pytest.mark.parametrize("policy, params", [("static", {"draft_length": 4}), ("heuristic", None), ("entropy-bound", None)])
def test_real_greedy_policies_match_target_only(pair, policy, params):
    _greedy_matches(pair, SENTENCES, max_new_tokens=40, policy=policy, policy_params=params)


@pytest.mark.slow
def test_real_sample_first_token_follows_target(pair):
    """Chi-square test on the first German token under top-k sampling, against the target's exact distribution."""
    samples, top_k, temperature = 240, 4, 1.5
    prompt = _prompt(pair, SENTENCES[0]).input_ids
    warpers = build_warpers(temperature, top_k, None)
    with torch.no_grad():
        logits = pair.target(prompt).logits[:, -1].float()
    probabilities = torch.softmax(warpers(prompt, logits), dim=-1)[0]
    support = torch.nonzero(probabilities).flatten().tolist()

    counts = dict.fromkeys(support, 0)
    for seed in range(samples):
        result = speculative_generate(
            pair.target, pair.draft, prompt, max_new_tokens=2, verify="sample", draft_length=1,
            temperature=temperature, top_k=top_k, seed=seed,
        )
        assert result.tokens[0] in counts, "sampled a token outside the target's top-k"
        counts[result.tokens[0]] += 1

    observed = [counts[token] for token in support]
    mass = sum(float(probabilities[token]) for token in support)
    expected = [float(probabilities[token]) / mass * samples for token in support]
    assert chisquare(observed, expected).pvalue > 0.001
