"""The self-int8-top drafts: the frequent-token head, the shipped ranking, and the lean Gemma 3 decoding path."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import tiny_models as tm
from cmsd_cli import speculative_generate
from cmsd_cli.models import self_draft
from cmsd_cli.models.errors import ModelLoadError
from cmsd_cli.models.lean_draft import LeanGemma3Draft
from cmsd_cli.models.self_draft import FrequentTokenHead, is_self_draft, make_self_draft, token_ranking
from cmsd_cli.models.spec import parse_spec

CPU = torch.device("cpu")


def _full_logits(model: nn.Module, tokens: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0]


def test_frequent_head_compact_matches_full():
    weight = torch.randn(50, 8)
    head = FrequentTokenHead(weight, torch.tensor([7, 3, 11, 60]))  # 60 is outside the vocabulary and dropped
    hidden = torch.randn(2, 8)
    full = head(hidden)
    assert full.shape == (2, 50)
    assert torch.equal(head.token_ids, torch.tensor([7, 3, 11]))
    torch.testing.assert_close(full[:, head.token_ids], hidden @ weight[head.token_ids].t())
    outside = torch.ones(50, dtype=torch.bool)
    outside[head.token_ids] = False
    assert torch.isneginf(full[:, outside]).all()

    head.set_prompt_tokens([3, 20, 20, 41])
    assert torch.equal(head.token_ids, torch.tensor([7, 3, 11, 20, 41]))
    head.compact = True
    torch.testing.assert_close(head(hidden), hidden @ weight[head.token_ids].t())
    head.set_prompt_tokens([5])  # a new prompt replaces the previous prompt's rows
    assert torch.equal(head.token_ids, torch.tensor([7, 3, 11, 5]))


def test_shipped_gemma3_ranking_loads():
    class _Gemma3Shape(nn.Module):
        config = type("Config", (), {"model_type": "gemma3_text", "final_logit_softcapping": None})()

        def get_output_embeddings(self):
            return nn.Linear(640, 262144, bias=False, device="meta")

    ranking = token_ranking(_Gemma3Shape())
    assert ranking is not None
    assert ranking.dtype == torch.long
    assert len(ranking) > 16384
    assert len(set(ranking.tolist())) == len(ranking)
    assert int(ranking.min()) >= 0
    assert int(ranking.max()) < 262144
    assert {0, 1, 2} <= set(ranking[:300].tolist())  # pad, eos and bos come first


def test_draft_names_are_parsed():
    assert is_self_draft("self-int8")
    assert is_self_draft("Self-Int8-Top16k")
    assert not is_self_draft("self-int8-top")
    assert not is_self_draft("self-fp16")
    assert parse_spec("self-int8-top32k", role="draft").kind == "self"
    with pytest.raises(ModelLoadError, match="self-int8-top<N>k"):
        make_self_draft("self-int8-top0k", tm.gemma3(), CPU)


def test_unranked_vocabulary_keeps_full_head(caplog):
    target = tm.gemma3()
    with caplog.at_level(logging.WARNING):
        draft = make_self_draft("self-int8-top16k", target, CPU)
    assert "no token-frequency ranking" in caplog.text
    assert not isinstance(draft, LeanGemma3Draft)


def _run_lean_against_target(lean: LeanGemma3Draft, target: nn.Module, prompt: list[int]) -> None:
    """Feed a prompt, single tokens past the sliding window, a block of three and a rollback; compare every logit."""
    cache = lean.new_cache()
    sequence: list[int] = []
    feeds = [prompt] + [[5 + step] for step in range(12)] + [[30, 31, 32]]
    with torch.inference_mode():
        for tokens in feeds:
            start = len(sequence)
            sequence.extend(tokens)
            logits = lean(input_ids=torch.tensor([tokens]), cache=cache, logits_to_keep=len(tokens)).logits[0]
            torch.testing.assert_close(logits, _full_logits(target, sequence)[start:], rtol=1e-4, atol=1e-4)

        cache.truncate(len(sequence) - 5)
        del sequence[-5:]
        sequence.extend([40, 41])
        logits = lean(input_ids=torch.tensor([[40, 41]]), cache=cache, logits_to_keep=2).logits[0]
        torch.testing.assert_close(logits, _full_logits(target, sequence)[-2:], rtol=1e-4, atol=1e-4)


def test_float_lean_path_matches_transformers():
    target = tm.gemma3(sliding_window=8)
    head = target.get_output_embeddings()
    lean = LeanGemma3Draft(target, head, build_hf_model=lambda: None, quantise=False)
    _run_lean_against_target(lean, target, tm.random_prompt(6, seed=1)[0].tolist())
    # A prompt longer than the window: the first feed already needs the sliding mask.
    _run_lean_against_target(lean, target, tm.random_prompt(11, seed=2)[0].tolist())


@pytest.fixture
def ranked_tiny_vocabulary(monkeypatch):
    """Pretend the tiny models' vocabulary has a shipped ranking: the even ids, then the odd ones."""
    ranking = torch.cat([torch.arange(0, tm.VOCAB_SIZE, 2), torch.arange(1, tm.VOCAB_SIZE, 2)])
    monkeypatch.setattr(self_draft, "token_ranking", lambda model: ranking)
    return ranking


def test_lean_int8_draft_greedy_exact(ranked_tiny_vocabulary):
    target = tm.gemma3(sliding_window=8)
    draft = make_self_draft("self-int8-top1k", target, CPU)
    assert isinstance(draft, LeanGemma3Draft)
    for seed in range(4):
        prompt = tm.random_prompt(4 + 3 * seed, seed)
        expected = speculative_generate(target, None, prompt, max_new_tokens=24, eos_token_id=[]).tokens
        for policy in ("static", "cmsd"):
            result = speculative_generate(target, draft, prompt, max_new_tokens=24, policy=policy, eos_token_id=[])
            assert result.tokens == expected
            assert result.stats["drafted"] > 0

    modules = draft.hf_model
    assert modules is draft.hf_model  # built once
    assert isinstance(modules.get_output_embeddings(), FrequentTokenHead)
    with torch.inference_mode():
        logits = modules(input_ids=tm.random_prompt(5, seed=9)).logits[0, -1]
    assert torch.isfinite(logits).sum() == tm.VOCAB_SIZE  # 1k tokens cover the whole tiny vocabulary


def test_small_head_drafts_only_its_tokens(ranked_tiny_vocabulary, monkeypatch):
    # A ranking of 16 tokens gives a head over those 16; the prompt's own tokens are added per call.
    frequent = ranked_tiny_vocabulary[:16]
    monkeypatch.setattr(self_draft, "token_ranking", lambda model: frequent)
    target = tm.gemma3(sliding_window=8)
    draft = make_self_draft("self-int8-top1k", target, CPU)
    prompt = tm.random_prompt(9, seed=3)
    allowed = set(frequent.tolist()) | set(prompt[0].tolist())
    drafted: list[int] = []

    expected = speculative_generate(target, None, prompt, max_new_tokens=30, eos_token_id=[]).tokens
    result = speculative_generate(
        target, draft, prompt, max_new_tokens=30, eos_token_id=[],
        on_iteration=lambda record: drafted.extend(record.draft_tokens),
    )

    assert result.tokens == expected
    assert drafted
    assert set(drafted) <= allowed
