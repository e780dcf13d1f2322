"""What calibration keeps from a decoding run: every drafted token's entropy and margin, and its verdict.

The calibration run decodes with greedy verification, so the output is the target's own greedy
output whatever the policy, and each round's drafted tokens are the draft's greedy continuation
from the round's start. In a round that drafted k tokens and accepted a of them, tokens 0..a-1
were accepted, token a (when a < k) was rejected, and tokens after it were never judged.

Seen per output position, a run also records the draft's proposal at every position p after the
correct prefix (the target's output before p): a drafted token at offset j <= a of a round that
starts at p - j. Only positions where the target added a bonus token after a fully accepted round
have no recorded proposal. `missing_positions` lists them, so that a draft pass can fill them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cmsd_cli.engine import GenerationResult
from cmsd_cli.engine.records import DRAFT_STOP_EOS
from cmsd_cli.policies import combine_confidence


@dataclass(frozen=True)
class DraftRound:
    """One recorded draft-then-verify round.

    `start` is the output position of the first drafted token. `entropy` (normalised) and `margin`
    contain one value per drafted token. `emitted` counts the tokens the round added to the output,
    which is `accepted + 1` unless the output ended inside the round.
    """

    start: int
    entropy: tuple[float, ...]
    margin: tuple[float, ...]
    accepted: int
    emitted: int
    ended_by_eos: bool  # the last drafted token is an end-of-sequence token, after which the draft stops
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def drafted(self) -> int:
        return len(self.entropy)

    def confidences(self, weight: float) -> tuple[float, ...]:
        """Compute the confidence of each drafted token for confidence weight `weight`."""
        return tuple(combine_confidence(h, m, weight) for h, m in zip(self.entropy, self.margin))


@dataclass(frozen=True)
class Proposal:
    """The draft's greedy token at one output position after the correct prefix, and its verdict."""

    entropy: float
    margin: float
    accepted: bool  # equal to the target's token there
    is_eos: bool  # an end-of-sequence token, after which the draft stops


@dataclass(frozen=True)
class AfterRejection:
    """The draft tokens a round drafted after its rejected token (never judged), which cost draft steps.

    `ends_with_eos` is True when the last of them is an end-of-sequence token, so the draft would
    have drafted nothing more.
    """

    entropy: tuple[float, ...]
    margin: tuple[float, ...]
    ends_with_eos: bool

    def confidences(self, weight: float) -> tuple[float, ...]:
        return tuple(combine_confidence(h, m, weight) for h, m in zip(self.entropy, self.margin))


@dataclass(frozen=True)
class LineRecord:
    """The rounds of one decoded input, the draft's proposal per output position, and the run's timings.

    `proposals[p]` is None where no proposal was recorded (see `missing_positions`).
    `after_rejection` maps each recorded rejection position to the tokens drafted after it.
    """

    rounds: tuple[DraftRound, ...]
    length: int  # output tokens
    seconds: float
    draft_seconds: float
    verify_seconds: float
    proposals: tuple[Proposal | None, ...] = ()
    after_rejection: dict[int, AfterRejection] = field(default_factory=dict)
    max_new_tokens: int | None = None  # the token limit of the run, which also limits drafting

    @property
    def iterations(self) -> int:
        return len(self.rounds)

    def missing_positions(self) -> list[int]:
        return [position for position, proposal in enumerate(self.proposals) if proposal is None]

    def with_proposals(self, filled: dict[int, Proposal]) -> LineRecord:
        """Return a copy whose missing proposals are taken from `filled` (position -> proposal)."""
        proposals = tuple(
            filled.get(position, proposal) if proposal is None else proposal
            for position, proposal in enumerate(self.proposals)
        )
        return replace(self, proposals=proposals)


def build_line(
    rounds: list[DraftRound],
    length: int,
    *,
    seconds: float = 0.0,
    draft_seconds: float = 0.0,
    verify_seconds: float = 0.0,
    max_new_tokens: int | None = None,
) -> LineRecord:
    """Build a line record from its rounds, deriving the proposal per position and the after-rejection tokens."""
    proposals: list[Proposal | None] = [None] * length
    after_rejection: dict[int, AfterRejection] = {}
    for round_ in rounds:
        last = round_.drafted - 1
        for offset in range(min(round_.accepted, last) + 1):
            position = round_.start + offset
            if position >= length:
                break
            proposals[position] = Proposal(
                entropy=round_.entropy[offset],
                margin=round_.margin[offset],
                accepted=offset < round_.accepted,
                is_eos=round_.ended_by_eos and offset == last,
            )
        rejected = round_.start + round_.accepted
        if round_.accepted < round_.drafted and rejected < length:
            after_rejection[rejected] = AfterRejection(
                entropy=round_.entropy[round_.accepted + 1 :],
                margin=round_.margin[round_.accepted + 1 :],
                ends_with_eos=round_.ended_by_eos and last > round_.accepted,
            )

    return LineRecord(
        rounds=tuple(rounds),
        length=length,
        seconds=seconds,
        draft_seconds=draft_seconds,
        verify_seconds=verify_seconds,
        proposals=tuple(proposals),
        after_rejection=after_rejection,
        max_new_tokens=max_new_tokens,
    )


def line_record(result: GenerationResult, max_new_tokens: int | None = None) -> LineRecord:
    """Keep the per-token confidences and verdicts of one `speculative_generate` result.

    `max_new_tokens` is the limit the run used; it bounds drafting near the end of the output.
    """
    length = len(result.tokens)
    rounds = []
    start = 0
    for record in result.trace:
        # A stop string can end the output inside a round; rounds past the output's end are dropped.
        emitted = min(len(record.emitted), length - start)
        if emitted <= 0:
            break
        rounds.append(
            DraftRound(
                start=start,
                entropy=tuple(record.entropy),
                margin=tuple(record.margin),
                accepted=record.accepted,
                emitted=emitted,
                ended_by_eos=record.draft_stop == DRAFT_STOP_EOS,
                draft_seconds=record.draft_seconds,
                verify_seconds=record.verify_seconds,
            )
        )
        start += emitted

    return build_line(
        rounds,
        start,
        seconds=float(result.stats.get("seconds", 0.0)),
        draft_seconds=sum(record.draft_seconds for record in result.trace),
        verify_seconds=sum(record.verify_seconds for record in result.trace),
        max_new_tokens=max_new_tokens,
    )


def judged_tokens(lines: list[LineRecord], weight: float) -> tuple[list[float], list[int]]:
    """Return the confidence and verdict (1 accepted, 0 rejected) of every drafted token the target judged.

    Tokens drafted after the first rejection in a round are left out. Greedy verification never
    judged them, and their context already contained a rejected token, so they tell nothing about
    how often a token is accepted after an accepted prefix, which is what the policy needs.
    """
    confidences: list[float] = []
    verdicts: list[int] = []
    for line in lines:
        for round_ in line.rounds:
            judged = min(round_.drafted, round_.accepted + 1)
            values = round_.confidences(weight)
            for position in range(judged):
                confidences.append(values[position])
                verdicts.append(1 if position < round_.accepted else 0)
    return confidences, verdicts
