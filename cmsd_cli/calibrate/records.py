"""What calibration keeps from a decoding run: every drafted token's entropy and margin, and its verdict.

The calibration run decodes with greedy verification, so the output is the target's own greedy
output whatever the policy, and each round's drafted tokens are the draft's greedy continuation
from the round's start. In a round that drafted k tokens and accepted a of them, tokens 0..a-1
were accepted, token a (when a < k) was rejected, and tokens after it were never judged.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmsd_cli.engine import GenerationResult
from cmsd_cli.engine.records import DRAFT_STOP_EOS
from cmsd_cli.policies import combine_confidence


@dataclass(frozen=True)
class DraftRound:
    """One recorded draft-then-verify round.

    `start` is the output position of the first drafted token. `entropy` (normalised) and `margin`
    hold one value per drafted token; `emitted` counts the tokens the round added to the output,
    which is `accepted + 1` except where the output ended inside the round.
    """

    start: int
    entropy: tuple[float, ...]
    margin: tuple[float, ...]
    accepted: int
    emitted: int
    ended_by_eos: bool  # the draft proposed an end-of-sequence token, so it would draft nothing after it

    @property
    def drafted(self) -> int:
        return len(self.entropy)

    def confidences(self, weight: float) -> tuple[float, ...]:
        """The confidence of each drafted token for confidence weight `weight`."""
        return tuple(combine_confidence(h, m, weight) for h, m in zip(self.entropy, self.margin))


@dataclass(frozen=True)
class LineRecord:
    """The rounds of one decoded input, with the engine's timings of the run."""

    rounds: tuple[DraftRound, ...]
    length: int  # output tokens
    seconds: float
    draft_seconds: float
    verify_seconds: float

    @property
    def iterations(self) -> int:
        return len(self.rounds)


def line_record(result: GenerationResult) -> LineRecord:
    """Keep the per-token confidences and verdicts of one `speculative_generate` result."""
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
            )
        )
        start += emitted

    return LineRecord(
        rounds=tuple(rounds),
        length=start,
        seconds=float(result.stats.get("seconds", 0.0)),
        draft_seconds=sum(record.draft_seconds for record in result.trace),
        verify_seconds=sum(record.verify_seconds for record in result.trace),
    )


def judged_tokens(lines: list[LineRecord], weight: float) -> tuple[list[float], list[int]]:
    """Return the confidence and verdict (1 accepted, 0 rejected) of every drafted token the target judged.

    Tokens drafted after the first rejection in a round are left out: greedy verification never
    judged them, and their context already held a rejected token, so they say nothing about how
    often a token is accepted after an accepted prefix, which is what the policy needs.
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
