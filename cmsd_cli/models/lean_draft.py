"""A lean decoding path for Gemma 3 self-drafts on the CPU.

A draft step of a small model is mostly overhead. For Gemma 3 270M through transformers' modules
it takes about 16 ms per token, of which the int8 matrix products are about 5 ms (2-core CPU). The
rest is Python module calls, mask building, small tensor operations and copying the whole KV cache
on every append. This
module runs the same layers with the same int8 weights in one plain function, with the query, key
and value projections fused into one matrix and the gate and up projections into another, and with
KV caches preallocated so that appending and rolling back copy nothing.

It serves only as a draft. Its results may differ from transformers' by float rounding, which can
only change which tokens the draft proposes: the target verifies every one of them.
"""

from __future__ import annotations

import copy
import math
import warnings
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

LEAN_MODEL_TYPES = ("gemma3_text",)


def supports_lean_draft(model: nn.Module) -> bool:
    """Return whether LeanGemma3Draft can draft for `model`, a loaded target."""
    config = model.config
    return (
        getattr(config, "model_type", None) in LEAN_MODEL_TYPES
        and getattr(config, "attn_logit_softcapping", None) is None
        and getattr(config, "final_logit_softcapping", None) is None
        and not getattr(config, "use_bidirectional_attention", False)
        and all((params or {}).get("rope_type", "default") == "default" for params in config.rope_parameters.values())
    )


class LeanCache:
    """Preallocated keys and values for every layer; `length` positions are valid."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, capacity: int = 256) -> None:
        self.keys = [torch.empty(kv_heads, capacity, head_dim, dtype=dtype) for _ in range(layers)]
        self.values = [torch.empty(kv_heads, capacity, head_dim, dtype=dtype) for _ in range(layers)]
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[1]

    def reserve(self, length: int) -> None:
        if length <= self.capacity:
            return
        capacity = max(length, 2 * self.capacity)
        for store in (self.keys, self.values):
            for index, old in enumerate(store):
                grown = old.new_empty(old.shape[0], capacity, old.shape[2])
                grown[:, : self.length] = old[:, : self.length]
                store[index] = grown

    def truncate(self, length: int) -> None:
        self.length = min(self.length, length)


def _linear(weight: torch.Tensor, quantise: bool) -> nn.Module:
    """Build a bias-free Linear over `weight`, dynamically quantised to int8 with per-row scales when `quantise`."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    linear.weight = nn.Parameter(weight.detach().float().contiguous(), requires_grad=False)
    if not quantise:
        return linear
    with warnings.catch_warnings():
        # torch 2.10+ warns that torch.ao.quantization moves to torchao, but still ships and runs it.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(nn.Sequential(linear), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)[0]


class _Layer(nn.Module):
    def __init__(self, layer: nn.Module, quantise: bool) -> None:
        super().__init__()
        attention, mlp = layer.self_attn, layer.mlp
        qkv = torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight])
        self.qkv = _linear(qkv, quantise)
        self.o = _linear(attention.o_proj.weight, quantise)
        self.gate_up = _linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), quantise)
        self.down = _linear(mlp.down_proj.weight, quantise)
        # Gemma's RMSNorm scales by (1 + weight).
        for name in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"):
            self.register_buffer(name, 1.0 + getattr(layer, name).weight.detach().float(), persistent=False)
        self.register_buffer("q_norm", 1.0 + attention.q_norm.weight.detach().float(), persistent=False)
        self.register_buffer("k_norm", 1.0 + attention.k_norm.weight.detach().float(), persistent=False)
        self.q_size = attention.q_proj.out_features
        self.kv_size = attention.k_proj.out_features
        self.sliding_window = attention.sliding_window


class LeanGemma3Draft(nn.Module):
    """A Gemma 3 self-draft: int8 layers run by one function, and an LM head given by the caller.

    `quantise=False` keeps the layers in float32, which makes the result equal to the target's up to
    float rounding (the tests check the layer arithmetic that way).

    Called like a transformers causal LM by cmsd's runner, with a LeanCache from `new_cache()`.
    Transformers' own generation cannot run it, so `hf_model` builds (once, on first use) the same
    draft as transformers modules for methods that need one, such as assisted generation.
    """

    def __init__(self, target: nn.Module, head: nn.Module, build_hf_model, quantise: bool = True) -> None:
        super().__init__()
        config = target.config
        self.config = config
        self.generation_config = copy.deepcopy(target.generation_config)
        text_model = target.get_decoder() if hasattr(target, "get_decoder") else target.model
        self.embedding = text_model.embed_tokens.weight.detach()  # shared with the target
        self.embed_scale = float(torch.tensor(math.sqrt(config.hidden_size), dtype=self.embedding.dtype))
        self.layers = nn.ModuleList(_Layer(layer, quantise) for layer in text_model.layers)
        self.register_buffer("final_norm", 1.0 + text_model.norm.weight.detach().float(), persistent=False)
        self.head = head
        self.eps = config.rms_norm_eps
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scale = config.query_pre_attn_scalar**-0.5
        self.layer_types = list(config.layer_types)
        self.inverse_frequency = {
            kind: 1.0 / (params["rope_theta"] ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
            for kind, params in config.rope_parameters.items()
        }
        self._build_hf_model = build_hf_model
        self._hf_model = None

    @property
    def hf_model(self) -> nn.Module:
        if self._hf_model is None:
            self._hf_model = self._build_hf_model()
        return self._hf_model

    def get_output_embeddings(self) -> nn.Module:
        return self.head

    def new_cache(self) -> LeanCache:
        return LeanCache(len(self.layers), self.kv_heads, self.head_dim, torch.float32)

    def _norm(self, hidden: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps) * scale

    def _rotary(self, positions: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        tables = {}
        for kind, inverse in self.inverse_frequency.items():
            angles = positions[:, None].float() * inverse[None, :]
            angles = torch.cat([angles, angles], dim=-1)
            tables[kind] = (angles.cos(), angles.sin())
        return tables

    @staticmethod
    def _rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = states.shape[-1] // 2
        rotated = torch.cat([-states[..., half:], states[..., :half]], dim=-1)
        return states * cos + rotated * sin

    def forward(self, input_ids: torch.Tensor, cache: LeanCache, logits_to_keep: int = 1, **_unused) -> SimpleNamespace:
        ids = input_ids.reshape(-1)
        count = ids.shape[0]
        start = cache.length
        end = start + count
        cache.reserve(end)
        positions = torch.arange(start, end)
        rotary = self._rotary(positions)
        masks = self._masks(start, count)

        hidden = F.embedding(ids, self.embedding) * self.embed_scale
        for index, layer in enumerate(self.layers):
            kind = self.layer_types[index]
            cos, sin = rotary[kind]
            normed = self._norm(hidden, layer.input_layernorm)
            qkv = layer.qkv(normed)
            query = qkv[:, : layer.q_size].view(count, self.heads, self.head_dim)
            key = qkv[:, layer.q_size : layer.q_size + layer.kv_size].view(count, self.kv_heads, self.head_dim)
            value = qkv[:, layer.q_size + layer.kv_size :].view(count, self.kv_heads, self.head_dim)
            query = self._rotate(self._norm(query, layer.q_norm), cos[:, None], sin[:, None])
            key = self._rotate(self._norm(key, layer.k_norm), cos[:, None], sin[:, None])
            keys, values = cache.keys[index], cache.values[index]
            keys[:, start:end] = key.transpose(0, 1)
            values[:, start:end] = value.transpose(0, 1)
            attended = F.scaled_dot_product_attention(
                query.transpose(0, 1),
                keys[:, :end],
                values[:, :end],
                attn_mask=masks[kind],
                scale=self.scale,
                enable_gqa=self.heads != self.kv_heads,
            )
            attended = layer.o(attended.transpose(0, 1).reshape(count, self.heads * self.head_dim))
            hidden = hidden + self._norm(attended, layer.post_attention_layernorm)
            normed = self._norm(hidden, layer.pre_feedforward_layernorm)
            gate, up = layer.gate_up(normed).chunk(2, dim=-1)
            feed_forward = layer.down(F.gelu(gate, approximate="tanh") * up)
            hidden = hidden + self._norm(feed_forward, layer.post_feedforward_layernorm)
        cache.length = end

        hidden = self._norm(hidden[-logits_to_keep:], self.final_norm)
        return SimpleNamespace(logits=self.head(hidden)[None])

    def _masks(self, start: int, count: int) -> dict[str, torch.Tensor | None]:
        """Boolean attention masks per layer kind (True = attend), or None where every cached position is visible."""
        end = start + count
        masks: dict[str, torch.Tensor | None] = {}
        for index, kind in enumerate(self.layer_types):
            if kind in masks:
                continue
            window = self.layers[index].sliding_window
            if count == 1 and (window is None or end <= window):
                masks[kind] = None
                continue
            query_positions = torch.arange(start, end)[:, None]
            key_positions = torch.arange(end)[None, :]
            allowed = key_positions <= query_positions
            if window is not None:
                allowed &= key_positions > query_positions - window
            masks[kind] = allowed
        return masks
