"""The skinny-input Linear kernel computes the same outputs as nn.Linear and keeps greedy output exact."""

from __future__ import annotations

import torch
from torch import nn

import tiny_models as tm
from cmsd_cli import speculative_generate
from cmsd_cli.models import kernels
from cmsd_cli.models.kernels import use_skinny_linear_kernels


def _pair(out_features: int, bias: bool = True) -> tuple[nn.Linear, nn.Linear]:
    patched = nn.Linear(16, out_features, bias=bias)
    reference = nn.Linear(16, out_features, bias=bias)
    reference.load_state_dict(patched.state_dict())
    return patched, reference


def test_kernel_matches_linear_for_every_row_count():
    for out_features in (40, 40000):
        for bias in (True, False):
            patched, reference = _pair(out_features, bias)
            assert use_skinny_linear_kernels(nn.Sequential(patched)) == 1
            for rows in (1, 2, 5, kernels.MAX_SKINNY_ROWS, kernels.MAX_SKINNY_ROWS + 1):
                hidden = torch.randn(1, rows, 16)
                torch.testing.assert_close(patched(hidden), reference(hidden), rtol=1e-5, atol=1e-5)


def test_one_row_is_doubled_and_prefill_keeps_linear(monkeypatch):
    calls = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda *args: calls.append(args[1].shape) or real_mm(*args))
    layer, _ = _pair(40)
    use_skinny_linear_kernels(nn.Sequential(layer))
    layer(torch.randn(1, 1, 16))
    assert calls == [torch.Size([16, 2])]  # the row is doubled to stay off the matrix-vector kernel
    layer(torch.randn(1, kernels.MAX_SKINNY_ROWS + 1, 16))
    assert len(calls) == 1


def test_other_layers_are_left_alone():
    model = nn.Sequential(nn.Linear(16, 40).to(torch.bfloat16), nn.Embedding(10, 16), nn.Linear(16, 40))
    assert use_skinny_linear_kernels(model) == 1


def test_greedy_stays_exact_with_the_kernel():
    target = tm.llama(seed=0)
    draft = tm.perturbed_copy(target, noise=0.1)
    assert use_skinny_linear_kernels(target) > 0
    prompts = [tm.random_prompt(3 + seed, seed) for seed in range(6)]
    for prompt in prompts:
        expected = speculative_generate(target, None, prompt, max_new_tokens=20, eos_token_id=[]).tokens
        result = speculative_generate(target, draft, prompt, max_new_tokens=20, draft_length=4, eos_token_id=[])
        assert result.tokens == expected
