"""Expected throughput of a cmsd policy setting under measured costs, and the search for the best setting.

Two estimators read the recorded rounds:

- replay: walk each recorded output as the candidate policy would. Every round drafts the draft's
  recorded greedy proposals from the round's start, ends where the candidate's budget or
  early-stop rule ends it, and accepts what the target accepted there. Greedy verification makes
  the output the same for every policy, so only the round boundaries and costs change. This is the
  estimator the search uses by default, because it needs no model of acceptance.
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
from cmsd_cli.policies import CmsdPolicy, combine_confidence

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
    # Replayed draft tokens with no record, charged as drafted (see `_replay_round`).
    assumed_tokens: int = 0

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
            "assumed_tokens": self.assumed_tokens,
        }


@dataclass(frozen=True)
class ReplayRound:
    """A recorded round with its confidences for one confidence weight (read by the model estimator)."""

    start: int
    confidences: tuple[float, ...]
    accepted: int


@dataclass(frozen=True)
class ReplayLine:
    """A recorded output with confidences for one confidence weight.

    Per output position: the confidence of the draft's proposal after the correct prefix, whether
    the target accepted it, and whether it is an end-of-sequence token. `after_rejection` maps a
    rejection position to the confidences of the tokens drafted after it and whether the last of
    them is an end-of-sequence token.
    """

    length: int
    confidences: tuple[float | None, ...]
    accepted: tuple[bool, ...]
    is_eos: tuple[bool, ...]
    after_rejection: dict[int, tuple[tuple[float, ...], bool]]
    max_new_tokens: int | None
    rounds: tuple[ReplayRound, ...]


def replay_lines(lines: Sequence[LineRecord], weight: float) -> list[ReplayLine]:
    """Prepare recorded lines for the estimators, computing each token's confidence for `weight`."""
    prepared = []
    for line in lines:
        confidences = tuple(
            None if proposal is None else combine_confidence(proposal.entropy, proposal.margin, weight)
            for proposal in line.proposals
        )
        prepared.append(
            ReplayLine(
                length=line.length,
                confidences=confidences,
                accepted=tuple(proposal is not None and proposal.accepted for proposal in line.proposals),
                is_eos=tuple(proposal is not None and proposal.is_eos for proposal in line.proposals),
                after_rejection={
                    position: (tokens.confidences(weight), tokens.ends_with_eos)
                    for position, tokens in line.after_rejection.items()
                },
                max_new_tokens=line.max_new_tokens,
                rounds=tuple(
                    ReplayRound(round_.start, round_.confidences(weight), round_.accepted) for round_ in line.rounds
                ),
            )
        )
    return prepared


def _draft_count(confidences: Sequence[float], budget: int, theta: float) -> int:
    """Return how many of `confidences` a policy with this budget and early-stop threshold drafts.

    Like `CmsdPolicy.keep_drafting`, a token below `theta` is still drafted and ends the round.
    """
    drafted = 0
    for confidence in confidences:
        drafted += 1
        if drafted >= budget or confidence < theta:
            break
    return drafted


@dataclass
class _ReplayRound:
    drafted: int = 0
    accepted: int = 0
    confidences: list[float] = field(default_factory=list)
    assumed: int = 0  # drafted tokens with no record, charged without a confidence


def _replay_round(line: ReplayLine, start: int, limit: int, theta: float) -> _ReplayRound:
    """Draft from output position `start` by the candidate's rules, for at most `limit` tokens."""
    result = _ReplayRound()
    position = start

    # The draft's proposals after a correct prefix, up to and including the first rejected one.
    while result.drafted < limit:
        confidence = line.confidences[position] if position < line.length else None
        if confidence is None:
            # Past the output's end (a stop string cut it) or an unfilled position: nothing on record.
            result.assumed = limit - result.drafted
            result.drafted = limit
            return result
        result.drafted += 1
        result.confidences.append(confidence)
        if not line.accepted[position]:
            break
        result.accepted += 1
        if line.is_eos[position] or confidence < theta:
            return result
        position += 1
    else:
        return result

    # Rejected at `position`. The draft goes on from its own rejected token, so these tokens are
    # wasted work, drafted until the budget, the early stop or an end-of-sequence token.
    if line.is_eos[position] or result.drafted >= limit or confidence < theta:
        return result
    after, ends_with_eos = line.after_rejection.get(position, ((), False))
    for confidence in after:
        result.drafted += 1
        result.confidences.append(confidence)
        if result.drafted >= limit or confidence < theta:
            return result
    if ends_with_eos:
        return result
    # NOTE: the record ends before the candidate would stop, so the rest is charged as drafted
    # with no early stop. This can only overstate the cost, so the estimate errs low for long budgets.
    result.assumed = limit - result.drafted
    result.drafted = limit
    return result


def replay_throughput(lines: Sequence[ReplayLine], setting: PolicySetting, costs: CostModel) -> Throughput:
    """Estimate the throughput of `setting` by replaying the recorded outputs with its rules.

    Greedy verification gives the same output for every policy, and the draft is greedy, so from
    any output position the candidate drafts the recorded proposals after the correct prefix until
    the first one the target rejected. Its round ends by its budget and early-stop rules, and by the
    room `max_new_tokens` leaves, as in the engine.
    """
    total = Throughput()
    theta = setting.theta_draft
    for line in lines:
        policy = setting.make_policy()
        policy.reset()
        position = 0
        while position < line.length:
            limit = policy.budget()
            if line.max_new_tokens is not None:
                # The engine drafts at most one token less than the room left, so the last comes from the target.
                limit = max(0, min(limit, line.max_new_tokens - position - 1))
            round_ = _replay_round(line, position, limit, theta)
            emitted = min(round_.accepted + 1, line.length - position)

            total.rounds += 1
            total.drafted += round_.drafted
            total.accepted += round_.accepted
            total.tokens += emitted
            total.assumed_tokens += round_.assumed
            total.seconds += costs.round_seconds(round_.drafted)
            policy.observe(round_.drafted, round_.accepted, round_.confidences)
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
            drafted = _draft_count(round_.confidences, policy.budget(), theta)

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
