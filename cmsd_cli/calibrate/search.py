"""Expected throughput of a cmsd policy setting under measured costs, and the search for the best setting.

Two estimators read the recorded rounds:

- replay: walk each recorded output as the candidate policy would. Every round drafts the draft's
  recorded greedy continuation from the round's start, ends where the candidate's budget or
  early-stop rule ends it, and accepts what the target accepted there. Greedy verification makes the output the same
  for every policy, so only the round boundaries and costs change. This is the estimator the search
  uses by default, because it needs no model of acceptance.
- model: for every recorded round start, the expected accepted length is the sum over i of the
  product of a(c_t) for t <= i, with a(c) the fitted acceptance curve.

Tokens per second are total tokens over total expected time, with each round costing
`drafted * draft_step + verify(drafted + 1) + round_overhead`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cmsd_cli.calibrate.costs import CostModel
from cmsd_cli.calibrate.fit import AcceptanceCurve
from cmsd_cli.calibrate.records import LineRecord
from cmsd_cli.policies import CmsdPolicy

ESTIMATORS = ("replay", "model")


def _cmsd_default(name: str):
    return next(f.default for f in dataclasses.fields(CmsdPolicy) if f.name == name)


@dataclass(frozen=True)
class PolicySetting:
    """The cmsd policy parameters that calibration chooses."""

    confidence_weight: float = _cmsd_default("confidence_weight")
    theta_draft: float = _cmsd_default("theta_draft")
    k_min: int = _cmsd_default("k_min")
    k_max: int = _cmsd_default("k_max")
    track: str = _cmsd_default("track")
    ema_decay: float = _cmsd_default("ema_decay")
    initial: float = _cmsd_default("initial")

    def policy_params(self) -> dict:
        return dataclasses.asdict(self)

    def make_policy(self) -> CmsdPolicy:
        return CmsdPolicy(**self.policy_params())


@dataclass(frozen=True)
class SearchGrid:
    """The values the search tries; every combination with k_min <= k_max is one candidate."""

    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    thetas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    k_mins: tuple[int, ...] = (1, 2, 3, 4)
    k_maxes: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    tracks: tuple[str, ...] = ("confidence", "acceptance")

    def settings(self, weight: float) -> Iterable[PolicySetting]:
        for theta, k_min, k_max in itertools.product(self.thetas, self.k_mins, self.k_maxes):
            if k_min > k_max:
                continue
            # A fixed budget ignores the moving average, so one track is enough.
            tracks = self.tracks if k_min < k_max else self.tracks[:1]
            for track in tracks:
                yield PolicySetting(confidence_weight=weight, theta_draft=theta, k_min=k_min, k_max=k_max, track=track)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Throughput:
    """Totals of one estimate: tokens, expected seconds, rounds, drafted and accepted tokens."""

    tokens: float = 0.0
    seconds: float = 0.0
    rounds: int = 0
    drafted: float = 0.0
    accepted: float = 0.0
    # Replay rounds that drafted fewer tokens than the policy would have, because the recorded
    # continuation ended there (see `replay_throughput`).
    truncated_rounds: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_accepted(self) -> float:
        return self.accepted / self.rounds if self.rounds else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def to_dict(self) -> dict:
        return {
            "tokens_per_second": self.tokens_per_second,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "rounds": self.rounds,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "mean_accepted": self.mean_accepted,
            "acceptance_rate": self.acceptance_rate,
            "truncated_rounds": self.truncated_rounds,
        }


@dataclass(frozen=True)
class ReplayRound:
    """A recorded round with its confidences for one confidence weight."""

    start: int
    confidences: tuple[float, ...]
    accepted: int
    ended_by_eos: bool


@dataclass(frozen=True)
class ReplayLine:
    """A recorded output: its rounds, and for every output position the round whose draft covers it."""

    length: int
    rounds: tuple[ReplayRound, ...]
    owner: tuple[int, ...]


def replay_lines(lines: Sequence[LineRecord], weight: float) -> list[ReplayLine]:
    """Prepare recorded lines for the estimators, computing each token's confidence for `weight`."""
    prepared = []
    for line in lines:
        rounds = []
        owner: list[int] = []
        for index, round_ in enumerate(line.rounds):
            rounds.append(
                ReplayRound(round_.start, round_.confidences(weight), round_.accepted, round_.ended_by_eos)
            )
            owner.extend([index] * round_.emitted)
        prepared.append(ReplayLine(length=line.length, rounds=tuple(rounds), owner=tuple(owner)))
    return prepared


def _draft_count(confidences: Sequence[float], budget: int, theta: float) -> tuple[int, bool]:
    """Return how many tokens a policy drafts from `confidences`, and whether it stopped on its own rule.

    Like `CmsdPolicy.keep_drafting`, a token below `theta` is still drafted and ends the round.
    """
    drafted = 0
    for confidence in confidences:
        drafted += 1
        if drafted >= budget or confidence < theta:
            return drafted, True
    return drafted, False


def replay_throughput(lines: Sequence[ReplayLine], setting: PolicySetting, costs: CostModel) -> Throughput:
    """Estimate the throughput of `setting` by replaying the recorded outputs with its rules.

    A round that starts at output position P inside recorded round r drafts the rest of r's
    continuation: the draft is greedy and its prefix up to P was accepted, so it would propose
    exactly those tokens. Its accepted count is what the target accepted of them.

    NOTE: a round can start late in a recorded round whose tokens were all accepted, where the
    recorded continuation ends before the candidate's budget. The candidate then drafts only the
    tokens on record, so long budgets are estimated slightly low. Recording longer drafts than the
    maximum k_max searched would remove this.
    """
    total = Throughput()
    theta = setting.theta_draft
    for line in lines:
        policy = setting.make_policy()
        policy.reset()
        position = 0
        while position < line.length:
            round_ = line.rounds[line.owner[position]]
            offset = position - round_.start
            continuation = round_.confidences[offset:]

            budget = policy.budget()
            drafted, stopped = _draft_count(continuation, budget, theta)
            if not stopped and not round_.ended_by_eos:
                total.truncated_rounds += 1
            accepted = min(drafted, round_.accepted - offset)
            emitted = min(accepted + 1, line.length - position)

            total.rounds += 1
            total.drafted += drafted
            total.accepted += accepted
            total.tokens += emitted
            total.seconds += costs.round_seconds(drafted)
            policy.observe(drafted, accepted, list(continuation[:drafted]))
            position += emitted
    return total


def model_throughput(
    lines: Sequence[ReplayLine], setting: PolicySetting, costs: CostModel, curve: AcceptanceCurve
) -> Throughput:
    """Estimate the throughput of `setting` from the fitted acceptance curve, over the recorded round starts.

    Each recorded round start is one sample of the contexts a round starts from. The policy drafts
    from the recorded confidences by its own rules. Given that all tokens before it were accepted,
    the target accepts the i-th token with probability a(c_i).
    """
    total = Throughput()
    theta = setting.theta_draft
    for line in lines:
        policy = setting.make_policy()
        policy.reset()
        for round_ in line.rounds:
            drafted, _ = _draft_count(round_.confidences, policy.budget(), theta)

            expected_accepted = 0.0
            all_accepted = 1.0
            for confidence in round_.confidences[:drafted]:
                all_accepted *= curve(confidence)
                expected_accepted += all_accepted

            total.rounds += 1
            total.drafted += drafted
            total.accepted += expected_accepted
            total.tokens += expected_accepted + 1
            total.seconds += costs.round_seconds(drafted)
            policy.observe(drafted, round(expected_accepted), list(round_.confidences[:drafted]))
    return total


def target_only_throughput(lines: Sequence[ReplayLine], costs: CostModel) -> Throughput:
    """Estimate target-only decoding of the same outputs: one pass over one token per output token."""
    tokens = sum(line.length for line in lines)
    return Throughput(tokens=tokens, seconds=tokens * costs.round_seconds(0), rounds=tokens)


def estimate(
    estimator: str,
    lines: Sequence[ReplayLine],
    setting: PolicySetting,
    costs: CostModel,
    curve: AcceptanceCurve | None = None,
) -> Throughput:
    if estimator == "replay":
        return replay_throughput(lines, setting, costs)
    if estimator == "model":
        if curve is None:
            raise ValueError("the model estimator needs a fitted acceptance curve")
        return model_throughput(lines, setting, costs, curve)
    raise ValueError(f"unknown estimator {estimator!r}; choose one of: {', '.join(ESTIMATORS)}")


@dataclass
class WeightResult:
    """The best setting found for one confidence weight."""

    weight: float
    setting: PolicySetting
    throughput: Throughput
    candidates: int


@dataclass
class SearchResult:
    """The best setting over the whole grid, and the best per confidence weight."""

    best: PolicySetting
    throughput: Throughput
    per_weight: list[WeightResult] = field(default_factory=list)

    @property
    def candidates(self) -> int:
        return sum(result.candidates for result in self.per_weight)


def search(
    lines_for_weight: Callable[[float], Sequence[ReplayLine]],
    costs: CostModel,
    grid: SearchGrid,
    *,
    estimator: str = "replay",
    curve_for_weight: Callable[[float], AcceptanceCurve] | None = None,
) -> SearchResult:
    """Return the setting in `grid` with the highest expected tokens per second.

    `lines_for_weight(w)` returns the recorded lines with confidences for weight w, and
    `curve_for_weight(w)` the acceptance curve fitted for w (needed by the model estimator only).
    Ties keep the earlier candidate in grid order, trying weights nearest the default first.
    `per_weight` lists the weights in that order.
    """
    if max(grid.k_maxes) > costs.max_draft_length:
        raise ValueError(
            f"the grid reaches k_max={max(grid.k_maxes)}, but verification was measured only up to "
            f"{costs.max_draft_length} draft tokens"
        )

    # The default weight goes first, so when the weight makes no difference (no early stop and a
    # fixed budget) the tie keeps the default.
    default_weight = PolicySetting().confidence_weight
    weights = sorted(grid.weights, key=lambda weight: abs(weight - default_weight))

    per_weight: list[WeightResult] = []
    for weight in weights:
        lines = lines_for_weight(weight)
        curve = curve_for_weight(weight) if curve_for_weight is not None else None
        best_setting: PolicySetting | None = None
        best: Throughput | None = None
        candidates = 0
        for setting in grid.settings(weight):
            candidates += 1
            result = estimate(estimator, lines, setting, costs, curve)
            if best is None or result.tokens_per_second > best.tokens_per_second:
                best_setting, best = setting, result
        if best_setting is None:
            raise ValueError("the search grid has no setting with k_min <= k_max")
        per_weight.append(WeightResult(weight, best_setting, best, candidates))

    winner = per_weight[0]
    for result in per_weight[1:]:
        if result.throughput.tokens_per_second > winner.throughput.tokens_per_second:
            winner = result
    return SearchResult(best=winner.setting, throughput=winner.throughput, per_weight=per_weight)
