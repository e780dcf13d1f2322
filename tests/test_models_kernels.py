"""The multi-row LM head kernel computes the same logits as nn.Linear and keeps greedy output exact."""

from __future__ import annotations

import torch
from torch import nn

import tiny_models as tm
from cmsd_cli import speculative_generate
from cmsd_cli.models import kernels
from cmsd_cli.models.kernels import use_multi_row_head_kernel


class _HeadOwner(nn.Module):
    def setup(self, head):
        self.head = head
        return self

    def get_output_embeddings(self):
        return self.head


def test_multi_row_head_matches_linear():
    head = nn.Linear(16, 40000, bias=True)
    reference = nn.Linear(16, 40000, bias=True)
    reference.load_state_dict(head.state_dict())
    assert use_multi_row_head_kernel(_HeadOwner().setup(head))
    for rows in (1, 2, 5):
        hidden = torch.randn(1, rows, 16)
        torch.testing.assert_close(head(hidden), reference(hidden), rtol=1e-5, atol=1e-5)


def test_small_or_non_float32_heads_are_left_alone():
    small = _HeadOwner().setup(nn.Linear(16, 100))
    assert not use_multi_row_head_kernel(small)
    half = _HeadOwner().setup(nn.Linear(16, 40000).to(torch.bfloat16))
    assert not use_multi_row_head_kernel(half)


def test_greedy_stays_exact_with_multi_row_head(monkeypatch):
    monkeypatch.setattr(kernels, "MIN_VOCAB_ROWS", 1)
    target = tm.llama(seed=0)
    draft = tm.perturbed_copy(target, noise=0.1)
    prompts = [tm.random_prompt(3 + seed, seed) for seed in range(6)]
    expected = [speculative_generate(target, None, p, max_new_tokens=20, eos_token_id=[]).tokens for p in prompts]
    assert use_multi_row_head_kernel(target)
    for prompt, tokens in zip(prompts, expected):
        result = speculative_generate(target, draft, prompt, max_new_tokens=20, draft_length=4, eos_token_id=[])
        assert result.tokens == tokens
