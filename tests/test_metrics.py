"""Quality and speed measures on small cases whose values were worked out by hand."""

from __future__ import annotations

import math

import pytest

from cmsd_cli.metrics import (
    bleu,
    chrf,
    consistency_bleu,
    median_seconds,
    rouge,
    speedup,
    tokens_per_second,
)


def test_bleu_identical_corpus_is_100():
    lines = ["the cat sat on the mat", "a dog barked at the postman twice"]
    result = bleu(lines, lines)
    assert result.score == pytest.approx(100.0, abs=1e-9)


def test_bleu_one_substitution_matches_hand_computation():
    # 1- to 4-gram precisions 4/5, 3/4, 2/3, 1/2 and equal lengths (no brevity penalty):
    # BLEU = 100 * (0.8 * 0.75 * 2/3 * 0.5) ** (1/4) = 100 * 0.2 ** 0.25.
    result = bleu(["a b c d e"], ["a b c d f"])
    assert result.score == pytest.approx(100 * 0.2**0.25, abs=1e-9)


def test_bleu_brevity_penalty_matches_hand_computation():
    # All n-grams of the 4-word hypothesis match, but the reference has 5 words: BP = exp(1 - 5/4).
    result = bleu(["a b c d"], ["a b c d e"])
    assert result.score == pytest.approx(100 * math.exp(1 - 5 / 4), abs=1e-9)


def test_bleu_signature_names_sacrebleu_settings():
    result = bleu(["a b c d"], ["a b c d"])
    assert "nrefs:1" in result.signature
    assert "tok:13a" in result.signature
    assert "version:" in result.signature


def test_bleu_target_language_selects_tokenizer():
    result = bleu(["我喜欢猫"], ["我喜欢猫"], target_language="zh")
    assert "tok:zh" in result.signature


def test_chrf_identical_is_100_and_disjoint_is_0():
    assert chrf(["the cat sat"], ["the cat sat"]).score == pytest.approx(100.0, abs=1e-9)
    assert chrf(["abc"], ["xyz"]).score == 0.0


def test_chrf_signature_names_character_order():
    assert "nc:6" in chrf(["abc"], ["abc"]).signature


def test_rouge_identical_is_one():
    scores = rouge(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert scores.rouge1 == pytest.approx(1.0)
    assert scores.rouge2 == pytest.approx(1.0)
    assert scores.rougeL == pytest.approx(1.0)


def test_rouge_partial_overlap_matches_hand_computation():
    # "the cat" against "the cat sat": ROUGE-1 P = 1, R = 2/3, F = 0.8; ROUGE-2 P = 1, R = 1/2, F = 2/3;
    # the longest common subsequence has 2 words, so ROUGE-L equals ROUGE-1. The corpus score is the
    # mean with an identical second pair (F = 1).
    scores = rouge(["the cat", "a dog ran"], ["the cat sat", "a dog ran"])
    assert scores.rouge1 == pytest.approx((0.8 + 1.0) / 2)
    assert scores.rouge2 == pytest.approx((2 / 3 + 1.0) / 2)
    assert scores.rougeL == pytest.approx((0.8 + 1.0) / 2)


def test_rouge_signature_and_dict():
    scores = rouge(["the cat"], ["the cat"])
    assert scores.signature.startswith("rouge-score:")
    assert "stemmer:yes" in scores.signature
    assert set(scores.as_dict()) == {"rouge1", "rouge2", "rougeL"}


def test_rouge_empty_corpus_raises():
    with pytest.raises(ValueError, match="at least one"):
        rouge([], [])


def test_corpus_length_mismatch_raises():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        chrf(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        rouge(["a", "b"], ["a"])


def test_consistency_bleu_identical_short_lines_is_100():
    # Lines shorter than four words have no 4-grams, so plain BLEU would be 0 here.
    lines = ["Hallo Welt", "Ja", ""]
    assert bleu(lines, lines).score == 0.0
    assert consistency_bleu(lines, lines).score == 100.0


def test_consistency_bleu_differing_outputs_is_plain_bleu():
    outputs = ["a b c d e"]
    baseline = ["a b c d f"]
    assert consistency_bleu(outputs, baseline).score == pytest.approx(bleu(outputs, baseline).score)


def test_tokens_per_second():
    assert tokens_per_second(10, 2.0) == 5.0
    assert tokens_per_second(10, 0.0) is None


def test_speedup_is_baseline_over_method_seconds():
    assert speedup(3.0, 1.5) == 2.0
    assert speedup(1.0, 4.0) == 0.25
    assert speedup(None, 1.0) is None
    assert speedup(1.0, 0.0) is None


def test_median_seconds():
    assert median_seconds([3.0, 1.0, 2.0]) == 2.0
    assert median_seconds([1.0, 2.0]) == 1.5
    with pytest.raises(ValueError):
        median_seconds([])
