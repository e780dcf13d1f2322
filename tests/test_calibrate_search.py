"""Throughput estimators and the policy search, on synthetic records whose best setting is known by hand."""

from __future__ import annotations

import pytest

import tiny_models as tm
from cmsd_cli.calibrate.calibration import check_costs, round_overhead
from cmsd_cli.calibrate.costs import CostModel, measure_costs
from cmsd_cli.calibrate.fit import AcceptanceCurve
from cmsd_cli.calibrate.records import DraftRound, LineRecord
from cmsd_cli.calibrate.search import (
    PolicySetting,
    SearchGrid,
    model_throughput,
    replay_lines,
    replay_throughput,
    search,
    target_only_throughput,
)

HIGH, LOW = 0.9, 0.2


def synthetic_line(rounds: list[tuple[list[float], int]]) -> LineRecord:
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
    return LineRecord(rounds=tuple(recorded), length=start, seconds=0.0, draft_seconds=0.0, verify_seconds=0.0)


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
    assert samples["context_tokens"] == 12


def timed_line(rounds: int, outside_seconds: float) -> LineRecord:
    line = synthetic_line([THREE_ACCEPTED] * rounds)
    return LineRecord(
        rounds=line.rounds, length=line.length, seconds=10.0 + outside_seconds, draft_seconds=4.0, verify_seconds=6.0
    )


def test_round_overhead_is_slope_over_rounds() -> None:
    # 0.3 s of prefill per line plus 0.01 s per round, and one line slowed down by a busy machine.
    lines = [timed_line(rounds, 0.3 + 0.01 * rounds) for rounds in (2, 4, 6, 9, 12)]
    lines.append(timed_line(5, 2.0))

    assert round_overhead(lines) == pytest.approx(0.01)


def test_round_overhead_without_spread_is_zero() -> None:
    assert round_overhead([timed_line(3, 0.5), timed_line(3, 0.4)]) == 0.0


def test_cost_check_compares_prediction_with_trace() -> None:
    lines = [timed_line(2, 0.0)]  # 2 rounds of 8 drafted tokens, 10 s in the timers
    costs = CostModel(draft_step=0.25, verify=(1.0,) * 9)

    check = check_costs(lines, costs)

    assert check["predicted_seconds"] == pytest.approx(2 * (8 * 0.25 + 1.0))
    assert check["measured_seconds"] == pytest.approx(10.0)
    assert check["measured_over_predicted"] == pytest.approx(10.0 / 6.0)
