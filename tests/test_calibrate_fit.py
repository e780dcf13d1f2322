"""The acceptance fit, its calibration scores, and what calibration keeps from a decoding trace."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

import tiny_models as tm
from cmsd_cli.calibrate.fit import (
    AcceptanceCurve,
    binned_acceptance,
    brier_score,
    expected_calibration_error,
    fit_isotonic,
    pool_adjacent_violators,
)
from cmsd_cli.calibrate.calibration import fill_missing_proposals
from cmsd_cli.calibrate.records import judged_tokens, line_record
from cmsd_cli.engine import GenerationResult, IterationRecord, speculative_generate
from cmsd_cli.policies import step_confidence


def test_isotonic_fit_exact_on_hand_case() -> None:
    # Verdicts 1, 0, 0, 1: the first three violate order and pool to 1/3.
    curve = fit_isotonic([0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1])

    assert curve.thresholds == (0.1, 0.4)
    assert curve.acceptance == (1 / 3, 1.0)
    assert curve(0.0) == 1 / 3
    assert curve(0.35) == 1 / 3
    assert curve(0.4) == 1.0
    assert curve(1.0) == 1.0


def test_isotonic_fit_keeps_ordered_data() -> None:
    curve = fit_isotonic([0.9, 0.1, 0.5, 0.6], [1, 0, 0, 1])

    assert curve.thresholds == (0.1, 0.6)
    assert curve.acceptance == (0.0, 1.0)


def test_isotonic_fit_gives_ties_one_value() -> None:
    curve = fit_isotonic([0.5, 0.5, 0.5, 0.5, 0.8], [1, 0, 0, 0, 1])

    assert curve.thresholds == (0.5, 0.8)
    assert curve.acceptance == (0.25, 1.0)


def test_isotonic_fit_is_monotone_and_keeps_the_mean() -> None:
    rng = random.Random(7)
    confidences = [rng.random() for _ in range(2000)]
    verdicts = [1 if rng.random() < 0.2 + 0.7 * c else 0 for c in confidences]

    curve = fit_isotonic(confidences, verdicts)

    grid = [i / 200 for i in range(201)]
    values = [curve(c) for c in grid]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert all(b > a for a, b in zip(curve.acceptance, curve.acceptance[1:]))
    # Least-squares pooling preserves the total: fitted values sum to the number of accepted tokens.
    assert sum(curve(c) for c in confidences) == pytest.approx(sum(verdicts))
    assert curve(0.05) < 0.4
    assert curve(0.95) > 0.7


def test_pool_adjacent_violators_values() -> None:
    assert pool_adjacent_violators([3.0, 1.0, 2.0]) == [2.0, 2.0, 2.0]
    assert pool_adjacent_violators([1.0, 3.0, 2.0]) == [1.0, 2.5, 2.5]
    assert pool_adjacent_violators([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    assert pool_adjacent_violators([4.0, 1.0], weights=[1.0, 3.0]) == [1.75, 1.75]


def test_curve_rejects_decreasing_values() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        AcceptanceCurve(thresholds=(0.0, 0.5), acceptance=(0.8, 0.2))


def test_brier_and_ece_exact_values() -> None:
    constant = AcceptanceCurve(thresholds=(0.0,), acceptance=(0.8,))
    verdicts = [1, 1, 1, 0]
    confidences = [0.1, 0.4, 0.6, 0.9]

    assert brier_score(constant, confidences, verdicts) == pytest.approx((3 * 0.04 + 0.64) / 4)
    # One bin: observed 0.75 against predicted 0.8.
    assert expected_calibration_error(constant, confidences, verdicts) == pytest.approx(0.05)


def test_binned_acceptance_counts_per_bin() -> None:
    curve = fit_isotonic([0.05, 0.15, 0.95, 1.0], [0, 1, 1, 1])

    bins = binned_acceptance(curve, [0.05, 0.15, 0.95, 1.0], [0, 1, 1, 1])

    assert [item.tokens for item in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[0].observed == 0.0
    assert bins[1].observed == 1.0
    assert bins[2].observed is None
    assert bins[9].fitted == 1.0


def _record(confidences: list[float], accepted: int, emitted: list[int]) -> IterationRecord:
    # Entropy 1 - c and margin c give confidence c for every weight.
    return IterationRecord(
        budget=len(confidences),
        draft_length=len(confidences),
        draft_tokens=[5] * len(confidences),
        entropy=[1 - c for c in confidences],
        margin=list(confidences),
        confidence=list(confidences),
        accepted=accepted,
        emitted=emitted,
        rollback=accepted < len(confidences),
        draft_stop="budget",
    )


def test_judged_tokens_leave_out_never_judged_ones() -> None:
    trace = [
        _record([0.9, 0.8, 0.3, 0.7], accepted=1, emitted=[5, 6]),
        _record([0.6, 0.5], accepted=2, emitted=[5, 5, 7]),
    ]
    result = GenerationResult(tokens=[5, 6, 5, 5, 7], text=None, finish_reason="length", stats={}, trace=trace)

    line = line_record(result)
    confidences, verdicts = judged_tokens([line], weight=0.5)

    # Round 1: token 0 accepted, token 1 rejected, tokens 2-3 never judged. Round 2: both accepted.
    assert confidences == pytest.approx([0.9, 0.8, 0.6, 0.5])
    assert verdicts == [1, 0, 1, 1]
    assert [round_.start for round_ in line.rounds] == [0, 2]
    assert line.length == 5


def test_line_record_rounds_tile_a_real_output() -> None:
    target = tm.llama(layers=2, seed=1)
    draft = tm.perturbed_copy(target, noise=0.2)

    result = speculative_generate(
        target, draft, tm.random_prompt(6, seed=3), max_new_tokens=20, policy="static", draft_length=4
    )
    line = line_record(result)

    assert line.length == len(result.tokens)
    position = 0
    for round_ in line.rounds:
        assert round_.start == position
        assert round_.emitted <= round_.accepted + 1
        position += round_.emitted
    assert position == len(result.tokens)
    assert sum(len(round_.entropy) for round_ in line.rounds) == result.stats["drafted"]


def test_build_line_proposals_per_position() -> None:
    trace = [
        _record([0.9, 0.8, 0.3, 0.7], accepted=1, emitted=[5, 6]),
        _record([0.6, 0.5], accepted=2, emitted=[5, 5, 7]),
        _record([0.4], accepted=0, emitted=[8]),
    ]
    result = GenerationResult(tokens=[5, 6, 5, 5, 7, 8], text=None, finish_reason="length", stats={}, trace=trace)

    line = line_record(result, max_new_tokens=6)

    assert [proposal.accepted if proposal else None for proposal in line.proposals] == [True, False, True, True, None, False]
    assert line.proposals[1].margin == 0.8
    # Position 4 is the target's bonus token after a fully accepted round, so no proposal is on record.
    assert line.missing_positions() == [4]
    assert sorted(line.after_rejection) == [1, 5]
    assert line.after_rejection[1].margin == (0.3, 0.7)
    assert line.after_rejection[5].margin == ()
    assert line.max_new_tokens == 6


def test_fill_missing_proposals_match_draft() -> None:
    target = tm.llama(layers=2, seed=1)
    draft = tm.perturbed_copy(target, noise=0.05)
    pair = SimpleNamespace(
        target=target, draft=draft, vocab_size=tm.VOCAB_SIZE, device=torch.device("cpu"),
        eos_token_id=tm.EOS_ID, is_encoder_decoder=False,
    )  # fmt: skip
    prompt = SimpleNamespace(input_ids=tm.random_prompt(8, seed=0))
    result = speculative_generate(target, draft, prompt.input_ids, max_new_tokens=30, policy="static", draft_length=4)
    line = line_record(result, 30)
    missing = line.missing_positions()
    assert missing  # this draft agrees often enough to accept whole rounds

    filled = fill_missing_proposals(pair, prompt, result.tokens, line, 30)

    assert filled.missing_positions() == []
    for position in missing:
        ids = torch.cat([prompt.input_ids, torch.tensor([result.tokens[:position]], dtype=torch.long)], dim=1)
        with torch.no_grad():
            q = torch.softmax(draft(ids).logits[0, -1], dim=-1)
        proposal = filled.proposals[position]
        assert proposal.accepted == (int(q.argmax()) == result.tokens[position])
        assert proposal.entropy == pytest.approx(step_confidence(q).entropy, abs=1e-5)
        assert proposal.margin == pytest.approx(step_confidence(q).margin, abs=1e-5)
