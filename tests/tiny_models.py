"""Tiny random-weight models built from configs, so tests never need the network.

All models share one vocabulary of `VOCAB_SIZE` tokens. Targets and drafts differ in depth and width,
so a draft agrees with its target only some of the time, which exercises partial acceptance and rollback.
"""

from __future__ import annotations

import torch
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

VOCAB_SIZE = 96
EOS_ID = 2
PAD_ID = 0
BOS_ID = 1


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def llama(layers: int = 4, hidden: int = 64, heads: int = 4, seed: int = 0) -> LlamaForCausalLM:
    _seeded(seed)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def gemma3(layers: int = 4, hidden: int = 64, sliding_window: int = 8, seed: int = 0) -> Gemma3ForCausalLM:
    """A Gemma 3 text model whose sliding window is short, so tests run past it within a few tokens."""
    _seeded(seed)
    config = Gemma3TextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=512,
        sliding_window=sliding_window,
        sliding_window_pattern=2,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return Gemma3ForCausalLM(config).eval()


def t5(layers: int = 3, d_model: int = 64, seed: int = 0) -> T5ForConditionalGeneration:
    _seeded(seed)
    config = T5Config(
        vocab_size=VOCAB_SIZE,
        d_model=d_model,
        d_kv=16,
        d_ff=d_model * 2,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=4,
        decoder_start_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return T5ForConditionalGeneration(config).eval()


def random_prompt(length: int, seed: int) -> torch.Tensor:
    """Token ids in [3, VOCAB_SIZE), so a prompt never contains BOS, EOS or padding by chance."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB_SIZE, (1, length), generator=generator)


def perturbed_copy(model: torch.nn.Module, noise: float, seed: int = 123) -> torch.nn.Module:
    """A copy of `model` with Gaussian noise added to every weight.

    Small noise gives a draft that agrees with the target most of the time but not always, which is
    the realistic case: partial acceptance and rollback in most rounds.
    """
    import copy

    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * noise * parameter.std().clamp_min(1e-3))
    return clone.eval()
