"""Throughput estimators and the policy search, on synthetic records whose best setting is known by hand."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import tiny_models as tm
from cmsd_cli.calibrate.calibration import check_costs, fill_missing_proposals, measurement_schedule, round_overhead
from cmsd_cli.calibrate.costs import CostModel, measure_costs
from cmsd_cli.calibrate.fit import AcceptanceCurve
from cmsd_cli.calibrate.records import DraftRound, LineRecord, build_line, line_record
from cmsd_cli.calibrate.search import (
    PolicySetting,
    SearchGrid,
    model_throughput,
    replay_lines,
    replay_throughput,
    search,
    target_only_throughput,
)
from cmsd_cli.engine import speculative_generate

HIGH, LOW = 0.9, 0.2


def synthetic_line(rounds: list[tuple[list[float], int]], max_new_tokens: int | None = None) -> LineRecord:
    """A recorded output from (confidences, accepted) per round; every round emits accepted + 1 tokens.

    Entropy 1 - c and margin c give confidence c whatever the confidence weight.
    """
    recorded = []
    start = 0
    for confidences, accepted in rounds:
        recorded.append(
            DraftRound(
                start=start,
                entropy=tuple(1 - c for c in confidences),
                margin=tuple(confidences),
                accepted=accepted,
                emitted=accepted + 1,
                ended_by_eos=False,
            )
        )
        start += accepted + 1
    return build_line(recorded, start, max_new_tokens=max_new_tokens)


def flat_costs(draft_step: float, verify: float = 1.0, tokens: int = 9) -> CostModel:
    return CostModel(draft_step=draft_step, verify=(verify,) * tokens)


def run_search(lines: list[LineRecord], costs: CostModel, grid: SearchGrid, estimator: str = "replay"):
    prepared = {weight: replay_lines(lines, weight) for weight in grid.weights}
    return search(prepared.__getitem__, costs, grid, estimator=estimator)


# Every round: three confident tokens accepted, then a rejected one, then four never judged.
THREE_ACCEPTED = ([HIGH, HIGH, HIGH, LOW, LOW, LOW, LOW, LOW], 3)


def test_replay_splits_rounds_a_short_budget_cannot_cover() -> None:
    lines = replay_lines([synthetic_line([THREE_ACCEPTED] * 2)], weight=0.5)
    costs = flat_costs(draft_step=0.1)

    # Budget 2: from a round start it drafts 2 (both accepted, 3 tokens out), then 2 more from
    # position 3 (the first is rejected, 1 token out), so two rounds per recorded round.
    two = replay_throughput(lines, PolicySetting(theta_draft=0.0, k_min=2, k_max=2), costs)
    assert two.rounds == 4
    assert two.tokens == 8
    assert two.accepted == 4
    assert two.drafted == 8
    assert two.seconds == pytest.approx(4 * (2 * 0.1 + 1.0))

    three = replay_throughput(lines, PolicySetting(theta_draft=0.0, k_min=3, k_max=3), costs)
    assert three.rounds == 2
    assert three.tokens == 8
    assert three.seconds == pytest.approx(2 * (3 * 0.1 + 1.0))


@pytest.mark.parametrize(
    ("draft_step", "best_k", "tokens_per_second"),
    [
        # Cheap drafts: draft exactly the 3 accepted tokens, 4 tokens per 0.3 + 1.0 seconds.
        (0.1, 3, 4 / 1.3),
        # Drafts dearer than verification: one token per round, 4 tokens per 2 * (2.0 + 1.0) seconds.
        (2.0, 1, 4 / 6.0),
    ],
)
def test_search_finds_hand_computed_draft_length(draft_step: float, best_k: int, tokens_per_second: float) -> None:
    lines = [synthetic_line([THREE_ACCEPTED] * 5)]
    grid = SearchGrid(weights=(0.5,), thetas=(0.0, 0.5), k_mins=(1, 2, 3, 4), k_maxes=tuple(range(1, 9)))

    result = run_search(lines, flat_costs(draft_step), grid)

    assert result.best == PolicySetting(confidence_weight=0.5, theta_draft=0.0, k_min=best_k, k_max=best_k)
    assert result.throughput.tokens_per_second == pytest.approx(tokens_per_second)


def test_search_finds_early_stop_threshold() -> None:
    # Accepted lengths alternate between 1 and 5, and the last accepted token of each round is the
    # only unconfident one. Stopping right after it drafts exactly the accepted tokens, and the
    # target adds the next one, so each recorded round is covered by one round with no wasted
    # draft: 16 tokens in (0.1 + 1) + (0.5 + 1) + (0.1 + 1) + (0.5 + 1) = 5.2 seconds. No setting
    # can do better, because covering a round needs its accepted tokens drafted, and a second
    # round costs another verification (1.0), more than any draft here.
    short = ([LOW] + [HIGH] * 7, 1)
    long = ([HIGH] * 4 + [LOW] + [HIGH] * 3, 5)
    lines = [synthetic_line([short, long, short, long])]
    grid = SearchGrid(weights=(0.5,), thetas=(0.0, 0.5), k_mins=tuple(range(1, 9)), k_maxes=tuple(range(1, 9)))

    result = run_search(lines, flat_costs(0.1), grid)

    assert result.throughput.tokens_per_second == pytest.approx(16 / 5.2)
    assert result.throughput.drafted == 12
    assert result.best.theta_draft == 0.5
    # Without the early stop the best fixed budget is 5, which wastes 4 draft tokens in each
    # short round: 16 tokens in 4 * (0.5 + 1) = 6.0 seconds.
    prepared = replay_lines(lines, 0.5)
    no_stop = [
        replay_throughput(prepared, PolicySetting(theta_draft=0.0, k_min=k, k_max=k), flat_costs(0.1)).tokens_per_second
        for k in range(1, 9)
    ]
    assert max(no_stop) == pytest.approx(16 / 6.0)
    assert no_stop.index(max(no_stop)) + 1 == 5


def test_search_with_model_estimator() -> None:
    # The fitted curve accepts confident tokens always and unconfident ones never, so drafting the
    # 3 confident tokens gives 4 tokens per 1.3 seconds at every recorded round start.
    lines = [synthetic_line([THREE_ACCEPTED] * 5)]
    curve = AcceptanceCurve(thresholds=(0.0, 0.5), acceptance=(0.0, 1.0))
    grid = SearchGrid(weights=(0.5,), thetas=(0.0,), k_mins=(1, 2, 3, 4), k_maxes=tuple(range(1, 9)))
    prepared = replay_lines(lines, 0.5)

    result = search(lambda weight: prepared, flat_costs(0.1), grid, estimator="model", curve_for_weight=lambda weight: curve)

    assert result.best == PolicySetting(confidence_weight=0.5, theta_draft=0.0, k_min=3, k_max=3)
    assert result.throughput.tokens_per_second == pytest.approx(4 / 1.3)


def test_search_prefers_default_weight_on_ties() -> None:
    lines = [synthetic_line([THREE_ACCEPTED] * 3)]
    grid = SearchGrid(weights=(0.0, 0.25, 0.5, 1.0), thetas=(0.0,), k_mins=(3,), k_maxes=(3,))

    result = run_search(lines, flat_costs(0.1), grid)

    assert result.best.confidence_weight == 0.5
    assert [item.weight for item in result.per_weight] == [0.5, 0.25, 0.0, 1.0]


def test_search_rejects_grid_beyond_measured_costs() -> None:
    lines = [synthetic_line([THREE_ACCEPTED])]
    grid = SearchGrid(weights=(0.5,), thetas=(0.0,), k_mins=(1,), k_maxes=(8,))

    with pytest.raises(ValueError, match="measured only up to 4 draft tokens"):
        run_search(lines, flat_costs(0.1, tokens=5), grid)


def test_model_estimator_exact_expected_length() -> None:
    curve = AcceptanceCurve(thresholds=(0.0, 0.5), acceptance=(0.5, 1.0))
    lines = replay_lines([synthetic_line([([HIGH, LOW, HIGH], 1)])], weight=0.5)
    costs = CostModel(draft_step=0.1, verify=(1.0, 1.5, 2.0, 2.5))

    estimate = model_throughput(lines, PolicySetting(theta_draft=0.0, k_min=2, k_max=2), costs, curve)

    # a(0.9) = 1 and a(0.2) = 0.5: expected accepted 1 + 1 * 0.5, plus the target's token.
    assert estimate.accepted == pytest.approx(1.5)
    assert estimate.tokens == pytest.approx(2.5)
    assert estimate.seconds == pytest.approx(2 * 0.1 + 2.0)


def test_target_only_costs_one_pass_per_token() -> None:
    lines = replay_lines([synthetic_line([THREE_ACCEPTED] * 2)], weight=0.5)
    costs = CostModel(draft_step=0.1, verify=(0.5, 0.7), round_overhead=0.05)

    estimate = target_only_throughput(lines, costs)

    assert estimate.tokens == 8
    assert estimate.seconds == pytest.approx(8 * 0.55)


def test_cost_model_round_seconds() -> None:
    costs = CostModel(draft_step=0.1, verify=(1.0, 1.2, 1.5), round_overhead=0.05)

    assert costs.round_seconds(0) == pytest.approx(1.05)
    assert costs.round_seconds(2) == pytest.approx(0.2 + 1.5 + 0.05)
    with pytest.raises(ValueError, match="no verification time measured for 4 tokens"):
        costs.round_seconds(3)
    assert CostModel.from_dict(costs.to_dict()) == costs


def test_measure_costs_on_tiny_models() -> None:
    target = tm.llama(layers=2, seed=0)
    draft = tm.perturbed_copy(target, noise=0.1)
    prompt = tm.random_prompt(12, seed=5)

    costs, samples = measure_costs(
        target, draft, tm.VOCAB_SIZE, prompt, prompt[0].tolist(), max_tokens=5, repeats=3
    )

    assert len(costs.verify) == 5
    assert all(seconds > 0 for seconds in costs.verify)
    assert all(b >= a for a, b in zip(costs.verify, costs.verify[1:]))
    assert costs.draft_step > 0
    assert len(samples["draft_step_seconds"]) == 3
    assert all(len(values) == 3 for values in samples["verify_seconds"].values())
    assert samples["context_tokens"] == [12, 12, 12]
    assert samples["repeats"] == 3


def test_measurement_schedule_spreads_repeats() -> None:
    assert measurement_schedule(10, 5) == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    assert measurement_schedule(2, 5) == [2, 3]
    assert measurement_schedule(4, 0) == [0, 0, 0, 0]


def timed_line(rounds: int, outside_seconds: float) -> LineRecord:
    line = synthetic_line([THREE_ACCEPTED] * rounds)
    return replace(line, seconds=10.0 + outside_seconds, draft_seconds=4.0, verify_seconds=6.0)


def test_round_overhead_is_slope_over_rounds() -> None:
    # 0.3 s of prefill per line plus 0.01 s per round, and one line slowed down by a busy machine.
    lines = [timed_line(rounds, 0.3 + 0.01 * rounds) for rounds in (2, 4, 6, 9, 12)]
    lines.append(timed_line(5, 2.0))

    assert round_overhead(lines) == pytest.approx(0.01)


def test_round_overhead_without_spread_is_zero() -> None:
    assert round_overhead([timed_line(3, 0.5), timed_line(3, 0.4)]) == 0.0


def test_cost_check_compares_prediction_with_trace() -> None:
    line = timed_line(2, 0.0)  # 2 rounds of 8 drafted tokens, 10 s in the timers
    rounds = (
        replace(line.rounds[0], draft_seconds=0.8, verify_seconds=0.5),
        replace(line.rounds[1], draft_seconds=1.6, verify_seconds=0.7),
    )
    costs = CostModel(draft_step=0.25, verify=(1.0,) * 9)

    check = check_costs([replace(line, rounds=rounds)], costs)

    assert check["predicted_seconds"] == pytest.approx(2 * (8 * 0.25 + 1.0))
    assert check["measured_seconds"] == pytest.approx(10.0)
    assert check["measured_over_predicted"] == pytest.approx(10.0 / 6.0)
    assert check["run_draft_step_seconds"] == pytest.approx(0.15)
    assert check["run_verify_seconds"] == {"9": pytest.approx(0.6)}
    assert check["run_verify_rounds"] == {"9": 2}
def test_replay_stops_at_accepted_eos() -> None:
    eos_round = DraftRound(
        start=0, entropy=(0.1, 0.1, 0.1), margin=(0.9, 0.9, 0.9), accepted=3, emitted=3, ended_by_eos=True
    )
    lines = replay_lines([build_line([eos_round], 3)], weight=0.5)

    estimate = replay_throughput(lines, PolicySetting(theta_draft=0.0, k_min=8, k_max=8), flat_costs(0.1))

    assert estimate.rounds == 1
    assert estimate.drafted == 3
    assert estimate.tokens == 3
    assert estimate.assumed_tokens == 0


def test_replay_drafts_recorded_tokens_after_rejection() -> None:
    # Token 1 is rejected; tokens 2-7 were drafted after it and never judged.
    lines = replay_lines([synthetic_line([([0.9, 0.5, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9], 1)])], weight=0.5)

    estimate = replay_throughput(lines, PolicySetting(theta_draft=0.3, k_min=8, k_max=8), flat_costs(0.1))

    # 0.9 accepted, 0.5 rejected, 0.9 drafted, 0.1 drafted and below 0.3, so the round ends.
    assert estimate.drafted == 4
    assert estimate.accepted == 1
    assert estimate.tokens == 2
    assert estimate.assumed_tokens == 0


def test_replay_charges_unrecorded_tokens() -> None:
    lines = replay_lines([synthetic_line([([0.9, 0.5, 0.9, 0.9], 1)])], weight=0.5)

    estimate = replay_throughput(lines, PolicySetting(theta_draft=0.0, k_min=8, k_max=8), flat_costs(0.1))

    assert estimate.drafted == 8
    assert estimate.assumed_tokens == 4
    assert estimate.seconds == pytest.approx(8 * 0.1 + 1.0)


def test_replay_keeps_room_for_target_token() -> None:
    # The run stopped at its token limit of 8, so the last round may draft at most 3 tokens.
    lines = replay_lines([synthetic_line([THREE_ACCEPTED] * 2, max_new_tokens=8)], weight=0.5)

    estimate = replay_throughput(lines, PolicySetting(theta_draft=0.0, k_min=8, k_max=8), flat_costs(0.1))

    # Round 1 drafts min(8, 8 - 0 - 1) = 7 tokens, round 2 from position 4 drafts 3.
    assert estimate.rounds == 2
    assert estimate.drafted == 10
    assert estimate.accepted == 6
    assert estimate.tokens == 8


@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_replay_matches_engine_run(noise: float) -> None:
    target = tm.llama(layers=2, seed=1)
    draft = tm.perturbed_copy(target, noise=noise)
    pair = SimpleNamespace(
        target=target, draft=draft, vocab_size=tm.VOCAB_SIZE, device=torch.device("cpu"),
        eos_token_id=tm.EOS_ID, is_encoder_decoder=False,
    )  # fmt: skip
    settings = [
        PolicySetting(theta_draft=0.0, k_min=3, k_max=3),
        PolicySetting(theta_draft=0.0, k_min=4, k_max=8),
        PolicySetting(confidence_weight=0.5, theta_draft=0.05, k_min=2, k_max=6),
        PolicySetting(theta_draft=0.02, k_min=1, k_max=8, track="acceptance"),
    ]
    for seed in (0, 2):
        prompt = SimpleNamespace(input_ids=tm.random_prompt(8, seed=seed))
        recording = speculative_generate(
            target, draft, prompt.input_ids, max_new_tokens=40, policy="static", draft_length=8, eos_token_id=tm.EOS_ID
        )
        line = fill_missing_proposals(pair, prompt, recording.tokens, line_record(recording, 40), 40)
        assert line.missing_positions() == []

        for setting in settings:
            real = speculative_generate(
                target, draft, prompt.input_ids, max_new_tokens=40, policy="cmsd",
                policy_params=setting.policy_params(), eos_token_id=tm.EOS_ID,
            )  # fmt: skip
            replayed = replay_throughput(replay_lines([line], setting.confidence_weight), setting, flat_costs(0.1))

            assert real.tokens == recording.tokens
            assert replayed.rounds == real.stats["iterations"], (seed, setting)
            assert replayed.drafted == real.stats["drafted"], (seed, setting)
            assert replayed.accepted == real.stats["accepted"], (seed, setting)
