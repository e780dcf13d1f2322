"""Greedy speculative decoding must reproduce the target's own greedy decoding token for token."""

from __future__ import annotations

import copy

import pytest
import torch

import tiny_models as tm
from cmsd_cli import speculative_generate

PROMPT_LENGTHS = [1, 2, 3, 5, 7, 9, 12, 15, 18, 21, 1, 4, 6, 10, 14, 19, 25, 30, 36, 41]  # 20 prompts
DRAFT_LENGTHS = [1, 2, 4, 8]
NEW_TOKENS = 24


def _pair(kind: str):
    if kind == "llama":
        target = tm.llama(layers=4, hidden=64, seed=0)
    elif kind == "gemma3":
        # A sliding window of 8 with prompts up to 41 tokens: rollback happens past the window.
        target = tm.gemma3(layers=4, hidden=64, sliding_window=8, seed=0)
    else:
        target = tm.t5(layers=3, d_model=64, seed=0)
    return target, tm.perturbed_copy(target, noise=0.1)


def _reference(target, prompt, max_new_tokens, eos):
    output = target.generate(
        prompt, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=tm.PAD_ID
    )
    start = 1 if target.config.is_encoder_decoder else prompt.shape[1]
    tokens = output[0, start:].tolist()
    if eos is not None and eos in tokens:
        tokens = tokens[: tokens.index(eos) + 1]
    return tokens


@pytest.fixture(scope="module", params=["llama", "gemma3", "t5"])
def model_pair(request):
    return request.param, *_pair(request.param)


def test_greedy_matches_target_generate_without_eos(model_pair):
    kind, target, draft = model_pair
    for seed, length in enumerate(PROMPT_LENGTHS):
        prompt = tm.random_prompt(length, seed)
        # An EOS id outside the vocabulary never occurs, so every run goes to max_new_tokens.
        expected = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
        assert len(expected) == NEW_TOKENS
        for k in DRAFT_LENGTHS:
            result = speculative_generate(
                target, draft, prompt, max_new_tokens=NEW_TOKENS, draft_length=k, eos_token_id=[]
            )
            assert result.tokens == expected, f"{kind} prompt {seed} (length {length}) draft_length {k}"
            assert result.finish_reason == "length"


def test_greedy_matches_target_generate_with_eos_in_the_way(model_pair):
    kind, target, draft = model_pair
    for seed, length in enumerate(PROMPT_LENGTHS):
        prompt = tm.random_prompt(length, seed)
        free_run = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
        # Declare a token the target really produces as EOS, so generation must stop there.
        eos = free_run[seed % 10 + 3]
        expected = _reference(target, prompt, NEW_TOKENS, eos=eos)
        assert expected[-1] == eos
        for k in DRAFT_LENGTHS:
            result = speculative_generate(target, draft, prompt, max_new_tokens=NEW_TOKENS, draft_length=k, eos_token_id=eos)
            assert result.tokens == expected, f"{kind} prompt {seed} draft_length {k}"
            assert result.finish_reason == "eos"
            assert result.tokens.count(eos) == 1


def test_target_only_baseline_matches_generate(model_pair):
    kind, target, _ = model_pair
    for seed in range(5):
        prompt = tm.random_prompt(3 + seed, seed)
        expected = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
        result = speculative_generate(target, None, prompt, max_new_tokens=NEW_TOKENS, eos_token_id=[])
        assert result.tokens == expected
        assert result.stats["drafted"] == 0
        assert result.stats["target_calls"] == NEW_TOKENS


def test_draft_identical_to_target_accepts_everything(model_pair):
    kind, target, _ = model_pair
    twin = copy.deepcopy(target)
    for draft in (target, twin):
        for k in DRAFT_LENGTHS:
            result = speculative_generate(
                target, draft, tm.random_prompt(6, k), max_new_tokens=NEW_TOKENS, draft_length=k, eos_token_id=[]
            )
            assert result.stats["acceptance_rate"] == 1.0
            assert result.stats["rollbacks"] == 0
            assert len(result.tokens) == NEW_TOKENS


class _ContrarianDraft(torch.nn.Module):
    """A draft that never proposes the target's argmax: the target's logits with their maximum removed."""

    def __init__(self, target):
        super().__init__()
        self.inner = copy.deepcopy(target)
        self.config = self.inner.config
        self.generation_config = self.inner.generation_config

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def get_encoder(self):
        return self.inner.get_encoder()

    def forward(self, **kwargs):
        output = self.inner(**kwargs)
        logits = output.logits.clone()
        logits.scatter_(-1, logits.argmax(dim=-1, keepdim=True), float("-inf"))
        output.logits = logits
        return output


def test_always_wrong_draft_rolls_back_every_round(model_pair):
    kind, target, _ = model_pair
    draft = _ContrarianDraft(target)
    for length in (1, 2, 9):
        prompt = tm.random_prompt(length, length)
        expected = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
        for k in DRAFT_LENGTHS:
            result = speculative_generate(target, draft, prompt, max_new_tokens=NEW_TOKENS, draft_length=k, eos_token_id=[])
            assert result.tokens == expected
            assert result.stats["accepted"] == 0
            rounds_with_drafts = [r for r in result.trace if r.draft_length > 0]
            assert all(r.rollback for r in rounds_with_drafts)


def test_max_new_tokens_met_exactly_when_a_round_accepts_more():
    target = tm.llama(seed=0)
    for max_new_tokens in (1, 2, 3, 5, 9, 17):
        result = speculative_generate(
            target, target, tm.random_prompt(4, 0), max_new_tokens=max_new_tokens, draft_length=8, eos_token_id=[]
        )
        assert len(result.tokens) == max_new_tokens
        assert result.finish_reason == "length"


def test_eos_accepted_inside_drafted_block_ends_output():
    target = tm.llama(seed=0)
    prompt = tm.random_prompt(5, 1)
    free_run = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
    eos = free_run[5]
    first_eos = free_run.index(eos)
    # The draft is the target itself, so the EOS arrives in the middle of an accepted block of 8.
    result = speculative_generate(target, target, prompt, max_new_tokens=NEW_TOKENS, draft_length=8, eos_token_id=eos)
    assert result.tokens == free_run[: first_eos + 1]
    assert result.finish_reason == "eos"
    assert result.stats["new_tokens"] == first_eos + 1
    assert sum(len(r.emitted) for r in result.trace) == first_eos + 1


def test_any_of_several_eos_ids_stops():
    target = tm.llama(seed=0)
    prompt = tm.random_prompt(5, 2)
    free_run = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
    eos_ids = [tm.VOCAB_SIZE + 5, free_run[7], free_run[3]]
    stop_at = min(free_run.index(free_run[7]), free_run.index(free_run[3]))
    result = speculative_generate(target, target, prompt, max_new_tokens=NEW_TOKENS, draft_length=4, eos_token_id=eos_ids)
    assert result.tokens == free_run[: stop_at + 1]


class _CharTokenizer:
    """Decodes token id i to one character, with id 10 as a newline."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join("\n" if i == 10 else chr(ord("0") + i % 64) for i in ids)


def test_stop_string_inside_accepted_block_cuts_output():
    target = tm.llama(seed=0)
    prompt = tm.random_prompt(5, 3)
    free_run = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
    tokenizer = _CharTokenizer()
    stop = tokenizer.decode(free_run[6:8])
    text = tokenizer.decode(free_run)
    cut = text.find(stop)
    result = speculative_generate(
        target, target, prompt, max_new_tokens=NEW_TOKENS, draft_length=8, eos_token_id=[],
        stop_strings=[stop], tokenizer=tokenizer,
    )
    assert result.finish_reason == "stop_string"
    assert result.text == text[:cut]
    assert stop not in result.text
    # Tokens end with the token that completes the stop string, and nothing after it.
    assert result.tokens == free_run[: cut + len(stop)]


@pytest.mark.parametrize(
    "settings",
    [
        {"repetition_penalty": 1.5},
        {"no_repeat_ngram_size": 2},
        {"min_new_tokens": 6},
        {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "min_new_tokens": 4},
    ],
)
def test_logits_processors_applied_per_verified_position(settings):
    target = tm.llama(seed=0)
    draft = tm.perturbed_copy(target, noise=0.1)
    for seed in range(4):
        prompt = tm.random_prompt(4 + seed, seed)
        free_run = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
        eos = free_run[2]  # an early EOS makes min_new_tokens matter
        output = target.generate(
            prompt, do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=eos, pad_token_id=tm.PAD_ID, **settings
        )
        expected = output[0, prompt.shape[1] :].tolist()
        result = speculative_generate(
            target, draft, prompt, max_new_tokens=NEW_TOKENS, draft_length=4, eos_token_id=eos, **settings
        )
        assert result.tokens == expected, f"{settings} prompt {seed}"


def test_generation_config_processors_are_applied():
    target = tm.llama(seed=0)
    target.generation_config.no_repeat_ngram_size = 2
    target.generation_config.repetition_penalty = 1.4
    draft = tm.perturbed_copy(target, noise=0.1)
    prompt = tm.random_prompt(6, 4)
    expected = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
    result = speculative_generate(target, draft, prompt, max_new_tokens=NEW_TOKENS, draft_length=4, eos_token_id=[])
    assert result.tokens == expected


def test_unsupported_generation_config_setting_is_rejected():
    target = tm.llama(seed=0)
    target.generation_config.sequence_bias = {(5,): 2.0}
    with pytest.raises(ValueError, match="sequence_bias"):
        speculative_generate(target, None, tm.random_prompt(3, 0), max_new_tokens=4)


def test_acceptance_counted_over_tokens_not_rounds():
    target = tm.llama(seed=0)
    draft = tm.perturbed_copy(target, noise=0.1)
    result = speculative_generate(target, draft, tm.random_prompt(8, 5), max_new_tokens=40, draft_length=4, eos_token_id=[])
    drafted = sum(r.draft_length for r in result.trace)
    accepted = sum(r.accepted for r in result.trace)
    assert result.stats["drafted"] == drafted
    assert result.stats["accepted"] == accepted
    assert result.stats["acceptance_rate"] == accepted / drafted
    assert 0.0 <= result.stats["acceptance_rate"] <= 1.0
    assert result.stats["target_calls"] == len(result.trace)
    assert all(r.accepted <= r.draft_length for r in result.trace)


def test_trace_records_confidence_per_drafted_token():
    target = tm.llama(seed=0)
    draft = tm.perturbed_copy(target, noise=0.1)
    result = speculative_generate(target, draft, tm.random_prompt(8, 6), max_new_tokens=20, draft_length=4, eos_token_id=[])
    for record in result.trace:
        assert len(record.entropy) == record.draft_length
        assert len(record.margin) == record.draft_length
        assert len(record.confidence) == record.draft_length
        assert all(0.0 <= value <= 1.0 for value in record.entropy + record.margin + record.confidence)
        assert record.draft_seconds >= 0.0
        assert record.verify_seconds > 0.0


def test_vocabulary_mismatch_names_both_sizes():
    target = tm.llama(seed=0)
    draft = tm.llama(seed=1)
    draft.resize_token_embeddings(tm.VOCAB_SIZE + 8)
    with pytest.raises(ValueError, match=r"\(104 tokens\).*\(96 tokens\).*shares the target's tokenizer"):
        speculative_generate(target, draft, tm.random_prompt(3, 0), max_new_tokens=4)


@pytest.mark.parametrize(
    "prompt, max_new_tokens, message",
    [
        (torch.zeros((1, 0), dtype=torch.long), 4, "input_ids is empty"),
        (tm.random_prompt(3, 0), 0, "max_new_tokens must be at least 1"),
        (torch.ones((2, 3), dtype=torch.long), 4, r"shape \[1, n\]"),
    ],
)
def test_invalid_arguments_raise_clear_errors(prompt, max_new_tokens, message):
    target = tm.llama(seed=0)
    with pytest.raises(ValueError, match=message):
        speculative_generate(target, None, prompt, max_new_tokens=max_new_tokens)


def test_left_padding_in_attention_mask_is_dropped():
    target = tm.llama(seed=0)
    prompt = tm.random_prompt(5, 7)
    padded = torch.cat([torch.full((1, 3), tm.PAD_ID), prompt], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 5, dtype=torch.long)], dim=1)
    plain = speculative_generate(target, target, prompt, max_new_tokens=10, eos_token_id=[])
    masked = speculative_generate(target, target, padded, attention_mask=mask, max_new_tokens=10, eos_token_id=[])
    assert masked.tokens == plain.tokens


def test_bfloat16_diverges_only_at_near_ties():
    """Exactness is a float32 promise. In bfloat16 the speculative and plain runs may split only where the
    target's top two logits are within bfloat16 rounding of each other."""
    target = tm.llama(seed=0).to(torch.bfloat16)
    draft = tm.perturbed_copy(tm.llama(seed=0), noise=0.1).to(torch.bfloat16)
    for seed in range(6):
        prompt = tm.random_prompt(5 + seed, seed)
        expected = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
        result = speculative_generate(target, draft, prompt, max_new_tokens=NEW_TOKENS, draft_length=4, eos_token_id=[])
        if result.tokens == expected:
            continue
        split = next(i for i, (a, b) in enumerate(zip(result.tokens, expected)) if a != b)
        prefix = torch.cat([prompt, torch.tensor([expected[:split]], dtype=torch.long)], dim=1)
        with torch.no_grad():
            logits = target(prefix).logits[0, -1].float()
        top2 = torch.topk(logits, 2).values
        # bfloat16 keeps 8 significant bits; allow a few units of rounding of the top logit.
        tolerance = 4 * 2.0**-8 * max(1.0, float(top2[0].abs()))
        assert float(top2[0] - top2[1]) <= tolerance, f"prompt {seed} diverged at {split} without a near-tie"


def test_drafting_stops_at_token_containing_stop_string():
    target = tm.llama(seed=0)
    prompt = tm.random_prompt(5, 3)
    free_run = _reference(target, prompt, NEW_TOKENS, eos=tm.VOCAB_SIZE + 1)
    tokenizer = _CharTokenizer()
    stop = tokenizer.decode([free_run[4]])
    result = speculative_generate(
        target, target, prompt, max_new_tokens=NEW_TOKENS, draft_length=8, eos_token_id=[],
        stop_strings=[stop], tokenizer=tokenizer,
    )
    first = free_run.index(free_run[4])
    assert result.tokens == free_run[: first + 1]
    # The draft is the target itself, so the round that reaches the stop token ends its draft there.
    assert result.trace[-1].draft_stop == "stop_string"
    assert result.trace[-1].draft_tokens[-1] == free_run[first]
