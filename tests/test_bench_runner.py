"""The benchmark runner on tiny models: fair timing, agreement with ar, and transformers baselines."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import tiny_models as tm
from cmsd_cli.bench.methods import (
    DEFAULT_METHODS,
    KNOWN_METHODS,
    METHODS,
    UnknownMethodError,
    parse_method_list,
    resolve_methods,
)
from cmsd_cli.bench.outputs import cut_output
from cmsd_cli.bench.runner import BenchSettings, run_benchmark

CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?'\"()-\n"


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A one-character-per-token tokenizer over the tiny models' vocabulary (ids 0-2 are special)."""
    vocab = {"<pad>": tm.PAD_ID, "<s>": tm.BOS_ID, "</s>": tm.EOS_ID}
    for character in CHARACTERS:
        vocab[character] = len(vocab)
    filler = 0
    while len(vocab) < tm.VOCAB_SIZE:
        vocab[f"<x{filler}>"] = len(vocab)
        filler += 1
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


@dataclass
class TinyPair:
    """The ModelPair fields the runner reads."""

    target: torch.nn.Module
    draft: torch.nn.Module | None
    tokenizer: object
    eos_token_id: int | list[int] | None = None
    vocab_size: int | None = None


@dataclass
class TinyPrompt:
    input_ids: torch.Tensor
    stop_strings: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def tokenizer():
    return char_tokenizer()


@pytest.fixture(scope="module")
def llama_pair(tokenizer):
    target = tm.llama(layers=2, hidden=64, seed=0)
    return TinyPair(target=target, draft=tm.perturbed_copy(target, noise=0.1), tokenizer=tokenizer)


def prompts(count: int, length: int = 6, stop_strings: list[str] | None = None) -> list[TinyPrompt]:
    return [TinyPrompt(tm.random_prompt(length, seed), list(stop_strings or [])) for seed in range(count)]


def reference_greedy(target, prompt: TinyPrompt, max_new_tokens: int, tokenizer=None) -> list[int]:
    """Plain `generate()` greedy output, cut by the benchmark's rule."""
    kwargs = {}
    if prompt.stop_strings:
        kwargs = {"stop_strings": prompt.stop_strings, "tokenizer": tokenizer}
    output = target.generate(
        prompt.input_ids,
        attention_mask=torch.ones_like(prompt.input_ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=[tm.EOS_ID],
        pad_token_id=tm.PAD_ID,
        **kwargs,
    )
    start = 1 if target.config.is_encoder_decoder else prompt.input_ids.shape[1]
    return cut_output(
        output[0, start:].tolist(), eos_ids=[tm.EOS_ID], tokenizer=tokenizer, stop_strings=prompt.stop_strings
    ).tokens


class FakeClock:
    """A clock where each decoding call of a method takes the next time from that method's list.

    `on_run` marks which method runs next. The first clock read of the call returns the current
    time and advances it by the method's cost, so the second read returns the cost as elapsed time.
    """

    def __init__(self, costs: dict[str, list[float]]) -> None:
        self.costs = {name: list(values) for name, values in costs.items()}
        self.now = 0.0
        self.pending = 0.0
        self.calls: list[tuple[str, int | None, int]] = []

    def on_run(self, method: str, index: int | None, repeat_index: int) -> None:
        self.calls.append((method, index, repeat_index))
        values = self.costs[method]
        self.pending = values.pop(0) if len(values) > 1 else values[0]

    def __call__(self) -> float:
        reading = self.now
        self.now += self.pending
        self.pending = 0.0
        return reading


# Method names


def test_default_methods_are_known():
    assert set(DEFAULT_METHODS) <= set(KNOWN_METHODS)
    assert DEFAULT_METHODS[0] == "ar"


def test_unknown_method_lists_known_ones():
    with pytest.raises(UnknownMethodError) as error:
        parse_method_list("ar,fast,cmsd")
    message = str(error.value)
    assert "'fast'" in message
    for name in KNOWN_METHODS:
        assert name in message


def test_method_list_keeps_order_and_drops_repeats():
    assert [spec.name for spec in parse_method_list(" cmsd, ar ,cmsd,")] == ["cmsd", "ar"]


def test_empty_method_list_raises():
    with pytest.raises(UnknownMethodError, match="No benchmark method"):
        resolve_methods([" ", ""])


def test_method_settings_match_their_names():
    assert METHODS["ar"].policy is None
    assert METHODS["cmsd"].verify == "greedy"
    assert METHODS["cmsd-tolerant"].verify == "tolerant"
    assert METHODS["cmsd-relaxed"].verify == "cmsd"
    assert METHODS["hf-static"].schedule == "constant"
    assert METHODS["hf-heuristic"].schedule == "heuristic"
    assert METHODS["hf-confidence"].confidence_stop
    assert not METHODS["cmsd-relaxed"].lossless


# Output cutting


def test_cut_output_stops_after_first_eos(tokenizer):
    ids = tokenizer("ab").input_ids + [tm.EOS_ID] + tokenizer("cd").input_ids
    cut = cut_output(ids, eos_ids=[tm.EOS_ID], tokenizer=tokenizer)
    assert cut.tokens == ids[:3]
    assert cut.text == "ab"
    assert cut.finish_reason == "eos"


def test_cut_output_keeps_token_completing_stop_string(tokenizer):
    ids = tokenizer("Hallo\nWelt").input_ids
    cut = cut_output(ids, eos_ids=[tm.EOS_ID], tokenizer=tokenizer, stop_strings=["\n"])
    assert cut.tokens == ids[:6]
    assert cut.text == "Hallo"
    assert cut.finish_reason == "stop_string"


def test_cut_output_is_idempotent(tokenizer):
    ids = tokenizer("one: two: three").input_ids
    once = cut_output(ids, eos_ids=[tm.EOS_ID], tokenizer=tokenizer, stop_strings=[": t"])
    twice = cut_output(once.tokens, eos_ids=[tm.EOS_ID], tokenizer=tokenizer, stop_strings=[": t"])
    assert once.text == "one"
    assert twice == once


def test_cut_output_without_tokenizer_has_no_text():
    cut = cut_output([5, 6, 7], eos_ids=[tm.EOS_ID])
    assert cut.tokens == [5, 6, 7]
    assert cut.text is None
    assert cut.finish_reason == "length"


# Runs on tiny models


def test_ar_matches_target_generate(llama_pair):
    batch = prompts(3)
    result = run_benchmark(llama_pair, batch, ["ar"], settings=BenchSettings(max_new_tokens=12))
    ar = result.method("ar")
    for prompt, run in zip(batch, ar.inputs):
        assert run.tokens == reference_greedy(llama_pair.target, prompt, 12)


def test_ar_matches_target_generate_with_stop_string(llama_pair, tokenizer):
    # The tiny model writes filler tokens often, so "<" occurs within a few tokens.
    batch = prompts(3, stop_strings=["<"])
    result = run_benchmark(llama_pair, batch, ["ar"], settings=BenchSettings(max_new_tokens=24))
    ar = result.method("ar")
    for prompt, run in zip(batch, ar.inputs):
        assert run.tokens == reference_greedy(llama_pair.target, prompt, 24, tokenizer)
    assert "stop_string" in {run.finish_reason for run in ar.inputs}


def test_lossless_methods_are_identical_to_ar(llama_pair):
    lossless = [name for name in KNOWN_METHODS if METHODS[name].lossless]
    result = run_benchmark(
        llama_pair, prompts(2, stop_strings=["<"]), lossless, settings=BenchSettings(max_new_tokens=16)
    )
    for name in lossless:
        row = result.method(name)
        assert row.error is None, name
        assert row.identical_to_ar == 1.0, name
        assert row.consistency_bleu == 100.0, name


def test_hf_methods_report_counters_from_generate(llama_pair):
    result = run_benchmark(
        llama_pair,
        prompts(2),
        ["ar", "hf-static", "hf-heuristic", "hf-confidence"],
        settings=BenchSettings(max_new_tokens=12, draft_length=3, hf_confidence_tokens=4),
    )
    for name in ("hf-static", "hf-heuristic", "hf-confidence"):
        row = result.method(name)
        drafted = sum(run.drafted for run in row.inputs)
        accepted = sum(run.accepted for run in row.inputs)
        iterations = sum(run.iterations for run in row.inputs)
        # Every round is one target forward pass, and emits its accepted tokens plus one.
        assert row.target_calls == iterations, name
        assert row.new_tokens == accepted + iterations, name
        assert row.acceptance_rate == accepted / drafted, name
        assert row.mean_accepted == accepted / iterations, name
        # Each draft forward pass proposes one token.
        assert row.draft_steps == drafted, name

    static = result.method("hf-static")
    assert static.settings["assistant"]["num_assistant_tokens"] == 3
    assert static.settings["assistant"]["assistant_confidence_threshold"] == 0.0
    # A fixed schedule drafts 3 tokens per round unless the token budget leaves less room.
    assert all(run.drafted <= 3 * run.iterations for run in static.inputs)


def test_hf_methods_leave_draft_generation_config_unchanged(llama_pair):
    config = llama_pair.draft.generation_config
    before = (config.num_assistant_tokens, config.num_assistant_tokens_schedule, config.assistant_confidence_threshold)
    settings = BenchSettings(max_new_tokens=4, hf_confidence_tokens=3)
    run_benchmark(llama_pair, prompts(1), ["hf-heuristic", "hf-confidence"], settings=settings)
    after = (config.num_assistant_tokens, config.num_assistant_tokens_schedule, config.assistant_confidence_threshold)
    assert after == before


def test_ar_has_no_acceptance_figures(llama_pair):
    row = run_benchmark(llama_pair, prompts(1), ["ar"], settings=BenchSettings(max_new_tokens=8)).method("ar")
    assert row.draft_steps == 0
    assert row.acceptance_rate is None
    assert row.mean_accepted is None
    assert row.rollback_rate is None
    assert row.speedup_vs_ar == 1.0


def test_speedup_uses_times_of_same_run(llama_pair):
    clock = FakeClock({"ar": [2.0], "static": [0.5], "hf-static": [4.0]})
    result = run_benchmark(
        llama_pair,
        prompts(3),
        ["ar", "static", "hf-static"],
        settings=BenchSettings(max_new_tokens=6),
        clock=clock,
        on_run=clock.on_run,
    )
    assert result.method("ar").seconds == 6.0
    assert result.method("static").seconds == 1.5
    assert result.method("static").speedup_vs_ar == 4.0
    assert result.method("hf-static").speedup_vs_ar == 0.5
    for row in result.methods:
        assert row.speedup_vs_ar == result.method("ar").seconds / row.seconds
        assert row.tokens_per_second == row.new_tokens / row.seconds


def test_repeats_report_median_time(llama_pair):
    # Warm-up first (1.0, not counted), then three repeats on the one input: median of 9, 1, 3 is 3.
    clock = FakeClock({"ar": [1.0, 9.0, 1.0, 3.0]})
    result = run_benchmark(
        llama_pair, prompts(1), ["ar"], settings=BenchSettings(max_new_tokens=4, repeat=3), clock=clock,
        on_run=clock.on_run,
    )
    run = result.method("ar").inputs[0]
    assert run.repeat_seconds == [9.0, 1.0, 3.0]
    assert run.seconds == 3.0
    assert result.method("ar").seconds == 3.0


def test_methods_interleave_per_input_after_warmup(llama_pair):
    calls: list[tuple[str, int | None, int]] = []
    methods = ["ar", "static", "hf-static"]
    run_benchmark(
        llama_pair,
        prompts(2),
        methods,
        settings=BenchSettings(max_new_tokens=4, repeat=2),
        on_run=lambda *call: calls.append(call),
    )
    expected = [(name, None, 0) for name in methods]
    for index in range(2):
        for repeat_index in range(2):
            expected += [(name, index, repeat_index) for name in methods]
    assert calls == expected


def test_warmup_prompt_is_not_measured(llama_pair):
    warmup = TinyPrompt(tm.random_prompt(5, seed=99))
    measured = prompts(2)
    result = run_benchmark(llama_pair, measured, ["ar"], settings=BenchSettings(max_new_tokens=6), warmup=warmup)
    ar = result.method("ar")
    assert [run.index for run in ar.inputs] == [0, 1]
    assert ar.inputs[0].tokens == reference_greedy(llama_pair.target, measured[0], 6)


def test_references_add_bleu_and_chrf(llama_pair):
    batch = prompts(2)
    first = run_benchmark(llama_pair, batch, ["ar"], settings=BenchSettings(max_new_tokens=8))
    # Scoring ar against its own outputs gives exact values.
    references = first.method("ar").texts
    result = run_benchmark(
        llama_pair, batch, ["ar", "static"], settings=BenchSettings(max_new_tokens=8), references=references
    )
    for name in ("ar", "static"):
        assert result.method(name).chrf == pytest.approx(100.0), name
        assert result.method(name).rouge1 is None, name
    assert "bleu" in result.signatures
    assert "chrf" in result.signatures


def test_summarize_references_add_rouge(llama_pair):
    batch = prompts(2)
    first = run_benchmark(llama_pair, batch, ["ar"], settings=BenchSettings(max_new_tokens=8))
    references = first.method("ar").texts
    result = run_benchmark(
        llama_pair, batch, ["ar"], task="summarize", settings=BenchSettings(max_new_tokens=8), references=references
    )
    row = result.method("ar")
    assert row.bleu is None
    assert row.rouge1 is not None
    assert "rouge" in result.signatures


def test_relaxed_methods_report_distance_from_ar(llama_pair):
    result = run_benchmark(
        llama_pair,
        prompts(2),
        ["ar", "cmsd-tolerant"],
        settings=BenchSettings(max_new_tokens=16, verify_params={"beta": 8, "tau": 8.0}),
    )
    row = result.method("cmsd-tolerant")
    assert row.settings["verify_params"] == {"beta": 8, "tau": 8.0}
    same = sum(run.tokens == ar.tokens for run, ar in zip(row.inputs, result.method("ar").inputs))
    assert row.identical_to_ar == same / 2
    assert 0.0 <= row.consistency_bleu <= 100.0


def test_policy_params_filtered_per_policy(llama_pair):
    settings = BenchSettings(max_new_tokens=6, draft_length=3, policy_params={"k_max": 5, "theta_draft": 0.2})
    result = run_benchmark(llama_pair, prompts(1), ["static", "heuristic", "cmsd"], settings=settings)
    assert result.method("static").settings["policy_params"] == {"draft_length": 3}
    assert result.method("heuristic").settings["policy_params"] == {"draft_length": 3, "k_max": 5}
    assert result.method("cmsd").settings["policy_params"] == {"k_max": 5, "theta_draft": 0.2}
    in_effect = result.method("cmsd").settings["in_effect"]["policy"]
    assert in_effect["policy"] == "cmsd"
    assert in_effect["k_max"] == 5
    assert in_effect["theta_draft"] == 0.2


def test_hf_failure_becomes_error_row(tokenizer):
    # A draft whose vocabulary has padding rows: cmsd's engine restricts both models to the shared
    # rows, but transformers treats a different vocabulary size as a different tokenizer and raises.
    target = tm.llama(layers=2, seed=0)
    torch.manual_seed(1)
    config = LlamaConfig(**{**target.config.to_dict(), "vocab_size": tm.VOCAB_SIZE + 8})
    draft = LlamaForCausalLM(config).eval()
    pair = TinyPair(target=target, draft=draft, tokenizer=tokenizer, vocab_size=tm.VOCAB_SIZE)

    result = run_benchmark(pair, prompts(2), ["ar", "hf-static", "static"], settings=BenchSettings(max_new_tokens=6))
    failed = result.method("hf-static")
    assert failed.error is not None
    assert "transformers generate() failed" in failed.error
    assert failed.seconds is None
    assert failed.speedup_vs_ar is None
    assert result.method("static").error is None
    assert result.method("static").identical_to_ar == 1.0


def test_missing_draft_raises(tokenizer):
    pair = TinyPair(target=tm.llama(layers=2, seed=0), draft=None, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="need a draft model"):
        run_benchmark(pair, prompts(1), ["ar", "cmsd"])
    result = run_benchmark(pair, prompts(1), ["ar"], settings=BenchSettings(max_new_tokens=4))
    assert result.method("ar").error is None


def test_reference_count_must_match(llama_pair):
    with pytest.raises(ValueError, match="2 prompts but 1 references"):
        run_benchmark(llama_pair, prompts(2), ["ar"], references=["only one"])


def test_without_ar_speedup_is_none(llama_pair):
    result = run_benchmark(llama_pair, prompts(1), ["static"], settings=BenchSettings(max_new_tokens=4))
    row = result.method("static")
    assert row.speedup_vs_ar is None
    assert row.identical_to_ar is None
    assert row.seconds is not None


def test_encoder_decoder_pair_matches_ar(tokenizer):
    target = tm.t5(layers=2, d_model=64, seed=0)
    pair = TinyPair(target=target, draft=tm.perturbed_copy(target, noise=0.1), tokenizer=tokenizer)
    batch = prompts(1, length=8)
    result = run_benchmark(pair, batch, ["ar", "hf-static", "static"], settings=BenchSettings(max_new_tokens=10))
    assert result.method("ar").inputs[0].tokens == reference_greedy(target, batch[0], 10)
    for name in ("hf-static", "static"):
        assert result.method(name).error is None, name
        assert result.method(name).identical_to_ar == 1.0, name
