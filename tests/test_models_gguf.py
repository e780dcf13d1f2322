"""GGUF loading through the converted-model cache, on a tiny llama GGUF file written by the test."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_models
from cmsd_cli.models import cache, gguf_cache, load_pair
from tiny_models import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE

# A sentencepiece-style vocabulary: specials, single characters, then a few merged pieces.
_SPECIALS = ["<unk>", "<s>", "</s>"]
_CHARACTERS = list("\u2581abcdefghijklmnopqrstuvwxyz.,")
_PIECES = ["\u2581t", "he", "\u2581the", "\u2581c", "at", "\u2581cat", "\u2581s", "\u2581sat", "\u2581o", "n", "\u2581on"]


def tiny_vocabulary() -> list[str]:
    tokens = _SPECIALS + _CHARACTERS + [piece for piece in _PIECES if piece not in _CHARACTERS]
    filler = [f"\u2581w{index}" for index in range(VOCAB_SIZE - len(tokens))]
    return tokens + filler


def permute_for_gguf(weight: torch.Tensor, heads: int) -> np.ndarray:
    """Reorder q/k rows the way llama.cpp stores them: each head's two rotary halves interleaved."""
    rows, columns = weight.shape
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, columns).transpose(1, 2).reshape(rows, columns).numpy()


def write_tiny_llama_gguf(path: Path, model) -> None:
    """Write `model` (tiny_models.llama()) as an F32 GGUF file with a llama tokenizer in its metadata."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    tokens = tiny_vocabulary()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(index) for index in range(len(tokens))])
    writer.add_token_types([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.NORMAL] * (len(tokens) - 3))
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(PAD_ID)

    state = {name: tensor.detach().float() for name, tensor in model.state_dict().items()}
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"].numpy())
    for layer in range(config.num_hidden_layers):
        prefix, block = f"model.layers.{layer}", f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", state[f"{prefix}.input_layernorm.weight"].numpy())
        writer.add_tensor(f"{block}.attn_q.weight", permute_for_gguf(state[f"{prefix}.self_attn.q_proj.weight"], heads))
        writer.add_tensor(f"{block}.attn_k.weight", permute_for_gguf(state[f"{prefix}.self_attn.k_proj.weight"], kv_heads))
        writer.add_tensor(f"{block}.attn_v.weight", state[f"{prefix}.self_attn.v_proj.weight"].numpy())
        writer.add_tensor(f"{block}.attn_output.weight", state[f"{prefix}.self_attn.o_proj.weight"].numpy())
        writer.add_tensor(f"{block}.ffn_norm.weight", state[f"{prefix}.post_attention_layernorm.weight"].numpy())
        writer.add_tensor(f"{block}.ffn_gate.weight", state[f"{prefix}.mlp.gate_proj.weight"].numpy())
        writer.add_tensor(f"{block}.ffn_up.weight", state[f"{prefix}.mlp.up_proj.weight"].numpy())
        writer.add_tensor(f"{block}.ffn_down.weight", state[f"{prefix}.mlp.down_proj.weight"].numpy())
    writer.add_tensor("output_norm.weight", state["model.norm.weight"].numpy())
    writer.add_tensor("output.weight", state["lm_head.weight"].numpy())

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMSD_CACHE", str(tmp_path / "cmsd-cache"))


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama-f32.gguf"
    write_tiny_llama_gguf(path, tiny_models.llama())
    return path


@pytest.fixture
def conversions(monkeypatch):
    """Counts the GGUF conversions that actually run."""
    calls = []
    original = gguf_cache.convert_gguf

    def counting(path, out_dir):
        calls.append(path)
        original(path, out_dir)

    monkeypatch.setattr(gguf_cache, "convert_gguf", counting)
    return calls


def reference_logits() -> torch.Tensor:
    with torch.no_grad():
        return tiny_models.llama()(tiny_models.random_prompt(7, seed=2)).logits


def loaded_logits(pair) -> torch.Tensor:
    with torch.no_grad():
        return pair.target(tiny_models.random_prompt(7, seed=2)).logits


def test_gguf_loads_same_model_and_tokenizer(gguf_file, conversions):
    pair = load_pair(target=str(gguf_file), device="cpu")

    assert conversions == [gguf_file]
    assert pair.target_name == "tiny-llama-f32.gguf"
    assert pair.family == "base"
    assert pair.vocab_size == VOCAB_SIZE
    assert pair.context_length == 512
    torch.testing.assert_close(loaded_logits(pair), reference_logits(), rtol=0, atol=1e-5)

    ids = pair.tokenizer("the cat sat on", add_special_tokens=False).input_ids
    assert pair.tokenizer.decode(ids) == "the cat sat on"
    assert pair.tokenizer("the cat").input_ids[0] == BOS_ID


def test_gguf_second_load_uses_cache(gguf_file, conversions):
    load_pair(target=str(gguf_file), device="cpu")
    pair = load_pair(target=str(gguf_file), device="cpu")

    assert len(conversions) == 1
    torch.testing.assert_close(loaded_logits(pair), reference_logits(), rtol=0, atol=1e-5)


def test_gguf_copy_elsewhere_hits_cache(gguf_file, conversions, tmp_path):
    load_pair(target=str(gguf_file), device="cpu")
    copied = tmp_path / "elsewhere" / "renamed.gguf"
    copied.parent.mkdir()
    shutil.copy(gguf_file, copied)

    load_pair(target=str(copied), device="cpu")

    assert len(conversions) == 1


def test_gguf_corrupt_cache_entry_rebuilt(gguf_file, conversions, caplog):
    load_pair(target=str(gguf_file), device="cpu")
    entry = cache.entry_path(gguf_cache.gguf_fingerprint(gguf_file))
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # inside the tensor data, so only the hash can tell
    weights.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="cmsd_cli.models.cache"):
        pair = load_pair(target=str(gguf_file), device="cpu")

    assert len(conversions) == 2
    assert "is unusable" in caplog.text
    assert cache.verify_entry(entry)
    torch.testing.assert_close(loaded_logits(pair), reference_logits(), rtol=0, atol=1e-5)


def test_gguf_fingerprint_follows_content(gguf_file, tmp_path):
    edited = tmp_path / "edited.gguf"
    data = bytearray(gguf_file.read_bytes())
    data[-10] ^= 0x01
    edited.write_bytes(bytes(data))

    assert gguf_cache.gguf_fingerprint(gguf_file) == gguf_cache.gguf_fingerprint(gguf_file)
    assert gguf_cache.gguf_fingerprint(edited) != gguf_cache.gguf_fingerprint(gguf_file)


def test_gguf_self_int8_draft(gguf_file):
    pair = load_pair(target=str(gguf_file), draft="self-int8", device="cpu")

    assert isinstance(pair.draft.lm_head, torch.ao.nn.quantized.dynamic.Linear)
