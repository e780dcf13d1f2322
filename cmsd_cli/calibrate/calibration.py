"""One calibration: decode inputs, fit acceptance against confidence, measure costs, search, build the profile."""

from __future__ import annotations

import datetime
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cmsd_cli.calibrate.costs import CostMeter, CostModel
from cmsd_cli.calibrate.fit import (
    AcceptanceCurve,
    CurveBin,
    binned_acceptance,
    brier_score,
    expected_calibration_error,
    fit_isotonic,
)
from cmsd_cli.calibrate.profile import PROFILE_KIND, PROFILE_POLICY, PROFILE_SCHEMA, device_description
from cmsd_cli.calibrate.records import LineRecord, Proposal, judged_tokens, line_record
from cmsd_cli.calibrate.search import (
    ESTIMATORS,
    PolicySetting,
    ReplayLine,
    SearchGrid,
    SearchResult,
    Throughput,
    estimate,
    replay_lines,
    search,
    target_only_throughput,
)
from cmsd_cli.engine import speculative_generate
from cmsd_cli.engine.processors import build_logits_processors, process_block
from cmsd_cli.engine.runners import make_runner
from cmsd_cli.policies import step_confidence

logger = logging.getLogger(__name__)

RECORDING_POLICY = "static"
RECORDING_VERIFY = "greedy"


class CalibrationError(ValueError):
    """Calibration cannot continue with these inputs; the message names the input and what to change."""


@dataclass(frozen=True)
class CalibrationSettings:
    """How to record, measure and search.

    `draft_length` is the number of tokens drafted every round of the recording run, so that every
    confidence level is seen. It is also the maximum k_max searched. `holdout` is the share of
    input lines, taken from the end, that the fit and the search never see and that checks them.
    """

    max_new_tokens: int = 128
    draft_length: int = 8
    holdout: float = 0.2
    repeats: int = 7
    estimator: str = "replay"
    grid: SearchGrid | None = None

    def __post_init__(self) -> None:
        if self.draft_length < 1:
            raise ValueError(f"draft_length must be at least 1, got {self.draft_length}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be between 0 and 1, got {self.holdout}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; choose one of: {', '.join(ESTIMATORS)}")

    def search_grid(self) -> SearchGrid:
        if self.grid is not None:
            return self.grid
        return SearchGrid(
            k_mins=tuple(range(1, min(4, self.draft_length) + 1)),
            k_maxes=tuple(range(1, self.draft_length + 1)),
        )


@dataclass(frozen=True)
class FitQuality:
    """The acceptance curve fitted for one confidence weight, and how well it predicts held-out verdicts."""

    weight: float
    curve: AcceptanceCurve
    train_tokens: int
    holdout_tokens: int
    train_acceptance: float
    brier: float | None  # on held-out tokens; None when no held-out token was judged
    baseline_brier: float | None  # of the constant train acceptance rate, for comparison
    ece: float | None
    bins: list[CurveBin]
    holdout_bins: list[CurveBin]

    def to_dict(self) -> dict:
        return {
            "method": "isotonic",
            "confidence_weight": self.weight,
            **self.curve.to_dict(),
            "train_tokens": self.train_tokens,
            "holdout_tokens": self.holdout_tokens,
            "train_acceptance": self.train_acceptance,
            "brier": self.brier,
            "baseline_brier": self.baseline_brier,
            "ece": self.ece,
            "bins": [item.to_dict() for item in self.bins],
            "holdout_bins": [item.to_dict() for item in self.holdout_bins],
        }


@dataclass
class Comparison:
    """Expected throughput of one setting under each estimator, on the train and held-out lines."""

    setting: PolicySetting | None  # None for target-only decoding
    estimates: dict[str, dict[str, Throughput]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "policy_params": self.setting.policy_params() if self.setting is not None else None,
            **{
                estimator: {split: value.to_dict() for split, value in splits.items()}
                for estimator, splits in self.estimates.items()
            },
        }


@dataclass
class CalibrationResult:
    lines: list[LineRecord]
    train_lines: int
    costs: CostModel
    cost_samples: dict
    cost_check: dict
    fits: dict[float, FitQuality]
    search: SearchResult
    chosen: Comparison
    default: Comparison
    target_only: Comparison
    recording_seconds: float
    search_seconds: float

    @property
    def holdout_lines(self) -> int:
        return len(self.lines) - self.train_lines

    @property
    def chosen_fit(self) -> FitQuality:
        return self.fits[self.search.best.confidence_weight]

    def speedup_over_default(self, estimator: str, split: str) -> float | None:
        chosen = self.chosen.estimates.get(estimator, {}).get(split)
        default = self.default.estimates.get(estimator, {}).get(split)
        if chosen is None or default is None or default.tokens_per_second == 0:
            return None
        return chosen.tokens_per_second / default.tokens_per_second


def measurement_schedule(lines: int, repeats: int) -> list[int]:
    """Return how many cost repeats to take after each line, spread evenly over the run."""
    counts = [0] * lines
    for repeat in range(repeats):
        counts[min(lines - 1, int((repeat + 0.5) * lines / repeats))] += 1
    return counts


def record_lines(
    pair,
    prompts: Sequence,
    settings: CalibrationSettings,
    meter: CostMeter | None = None,
    on_line: Callable[[int], None] | None = None,
) -> tuple[list[LineRecord], list[list[int]]]:
    """Decode every prompt with a fixed draft length and greedy verification; return the records and outputs.

    A static policy never stops drafting early, so every round records `draft_length` confidences
    (fewer only at an end-of-sequence token or the token limit). The proposals the run never
    drafted are filled in by a draft pass over each output. With a `meter`, `settings.repeats`
    cost repeats are taken between lines, each on the context of the line just decoded.
    """
    schedule = measurement_schedule(len(prompts), settings.repeats if meter is not None else 0)
    pending = 0
    records = []
    outputs = []
    for index, prompt in enumerate(prompts):
        result = speculative_generate(
            pair.target,
            pair.draft,
            prompt.input_ids.to(pair.device),
            max_new_tokens=settings.max_new_tokens,
            verify=RECORDING_VERIFY,
            policy=RECORDING_POLICY,
            draft_length=settings.draft_length,
            eos_token_id=pair.eos_token_id,
            vocab_size=pair.vocab_size,
            stop_strings=list(prompt.stop_strings) or None,
            tokenizer=pair.tokenizer,
        )
        output = list(result.tokens)
        record = line_record(result, settings.max_new_tokens)
        records.append(fill_missing_proposals(pair, prompt, output, record, settings.max_new_tokens))
        outputs.append(output)

        # A context too short to time a pass on (an empty output of an encoder-decoder model)
        # passes its repeats on to the next line.
        pending += schedule[index]
        context = _context(pair, prompt, output)
        if meter is not None and len(context) >= 2:
            for _ in range(pending):
                meter.measure(pair.target, pair.draft, pair.vocab_size, prompt.input_ids.to(pair.device), context)
            pending = 0
        if on_line is not None:
            on_line(index)
    return records, outputs


def _eos_ids(pair) -> set[int]:
    eos = pair.eos_token_id
    if eos is None:
        eos = getattr(pair.target.generation_config, "eos_token_id", None)
    if eos is None:
        return set()
    return {eos} if isinstance(eos, int) else set(eos)


def fill_missing_proposals(pair, prompt, output: list[int], line: LineRecord, max_new_tokens: int) -> LineRecord:
    """Fill in the draft's proposal at the output positions the run never drafted for (see `records`).

    One draft pass over the whole output gives the draft's next-token distribution after every
    prefix, processed by the same logits processors as in the engine.
    """
    missing = line.missing_positions()
    if not missing:
        return line
    context = _context(pair, prompt, output)
    prefix_length = len(context) - len(output)
    rows = max(missing) + 1
    eos_ids = _eos_ids(pair)
    processors = build_logits_processors(
        pair.target,
        prompt_length=prefix_length,
        max_length=prefix_length + max_new_tokens,
        eos_token_ids=sorted(eos_ids),
        overrides={},
        extra=None,
    )

    filled: dict[int, Proposal] = {}
    with torch.inference_mode():
        runner = make_runner(pair.draft, pair.vocab_size, prompt.input_ids.to(pair.device), None)
        runner.start(context[:prefix_length])
        # Row i is the distribution after the prefix and output[:i].
        logits = runner.feed(context[prefix_length - 1 : prefix_length - 1 + rows], logits_to_keep=rows)
        logits = process_block(processors, context[:prefix_length], output[: rows - 1], logits)
        for position in missing:
            q = torch.softmax(logits[position], dim=-1)
            step = step_confidence(q)
            token = int(q.argmax())
            filled[position] = Proposal(
                entropy=step.entropy, margin=step.margin, accepted=token == output[position], is_eos=token in eos_ids
            )
    return line.with_proposals(filled)


def split_lines(count: int, holdout: float) -> int:
    """Return how many leading lines are for training; at least one line goes to each side."""
    if count < 2:
        raise CalibrationError(
            f"Calibration needs at least 2 non-empty input lines (one is held out to check the fit), got {count}; "
            "give more lines or a larger --limit."
        )
    held_out = min(count - 1, max(1, round(count * holdout)))
    return count - held_out


def round_overhead(lines: Sequence[LineRecord]) -> float:
    """Estimate the seconds per round spent outside drafting and verification (stop strings, bookkeeping).

    Each line's time outside the draft and verification timers is a fixed part (the prompt's
    prefill) plus this overhead per round. The slope is the Theil-Sen estimate (the median of the
    slopes between every two lines with different round counts), which a few slow lines on a
    shared machine do not move. It is 0 when no two lines differ in round count, and never negative.
    """
    points = [
        (line.iterations, line.seconds - line.draft_seconds - line.verify_seconds) for line in lines if line.iterations
    ]
    slopes = [
        (outside_b - outside_a) / (rounds_b - rounds_a)
        for index, (rounds_a, outside_a) in enumerate(points)
        for rounds_b, outside_b in points[index + 1 :]
        if rounds_b != rounds_a
    ]
    if not slopes:
        return 0.0
    return max(0.0, statistics.median(slopes))


def check_costs(lines: Sequence[LineRecord], costs: CostModel) -> dict:
    """Compare the cost model with the timings of the recording run.

    Returns the draft and verification seconds the model predicts for the recorded rounds against
    the seconds they took, and the run's own medians: seconds per draft step, and seconds per
    verification by the number of tokens it covered.
    """
    predicted = 0.0
    draft_steps: list[float] = []
    verify_by_tokens: dict[int, list[float]] = {}
    for line in lines:
        for round_ in line.rounds:
            predicted += round_.drafted * costs.draft_step + costs.verify_seconds(round_.drafted + 1)
            if round_.drafted:
                draft_steps.append(round_.draft_seconds / round_.drafted)
            verify_by_tokens.setdefault(round_.drafted + 1, []).append(round_.verify_seconds)
    measured = sum(line.draft_seconds + line.verify_seconds for line in lines)
    return {
        "predicted_seconds": predicted,
        "measured_seconds": measured,
        "measured_over_predicted": measured / predicted if predicted > 0 else None,
        "run_draft_step_seconds": statistics.median(draft_steps) if draft_steps else None,
        "run_verify_seconds": {
            str(tokens): statistics.median(values) for tokens, values in sorted(verify_by_tokens.items())
        },
        "run_verify_rounds": {str(tokens): len(values) for tokens, values in sorted(verify_by_tokens.items())},
    }


def _context(pair, prompt, output: list[int]) -> list[int]:
    if pair.is_encoder_decoder:
        config = pair.target.generation_config
        start = config.decoder_start_token_id
        if start is None:
            start = pair.target.config.decoder_start_token_id
        return [int(start)] + output
    return prompt.input_ids[0].tolist() + output


def fit_quality(weight: float, train: Sequence[LineRecord], holdout: Sequence[LineRecord]) -> FitQuality:
    """Fit the acceptance curve for `weight` on the train lines and score it on the held-out lines."""
    confidences, verdicts = judged_tokens(list(train), weight)
    if not confidences:
        raise CalibrationError(
            "No drafted token was judged on the training lines (every output ended at once); "
            "give longer inputs or a larger --max-new-tokens."
        )
    curve = fit_isotonic(confidences, verdicts)
    train_acceptance = sum(verdicts) / len(verdicts)

    held_confidences, held_verdicts = judged_tokens(list(holdout), weight)
    brier = baseline = ece = None
    if held_confidences:
        brier = brier_score(curve, held_confidences, held_verdicts)
        baseline = sum((train_acceptance - y) ** 2 for y in held_verdicts) / len(held_verdicts)
        ece = expected_calibration_error(curve, held_confidences, held_verdicts)

    return FitQuality(
        weight=weight,
        curve=curve,
        train_tokens=len(confidences),
        holdout_tokens=len(held_confidences),
        train_acceptance=train_acceptance,
        brier=brier,
        baseline_brier=baseline,
        ece=ece,
        bins=binned_acceptance(curve, confidences, verdicts),
        holdout_bins=binned_acceptance(curve, held_confidences, held_verdicts),
    )


def calibrate(
    pair,
    prompts: Sequence,
    settings: CalibrationSettings,
    *,
    on_line: Callable[[int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """Record the prompts, measure costs, fit every confidence weight and search the policy grid.

    `prompts` are `Prompt` objects from `cmsd_cli.tasks`; the last `settings.holdout` share of them
    is held out of the fit and the search. Costs are timed between the lines (see `record_lines`).
    `on_line(i)` is called after prompt i is decoded and its cost repeats are taken, and
    `on_stage(name)` when a later stage starts.
    """
    if pair.draft is None:
        raise CalibrationError("Calibration needs a draft model, but the pair was loaded without one; pass --draft.")
    grid = settings.search_grid()
    train_count = split_lines(len(prompts), settings.holdout)

    default = PolicySetting()
    meter = CostMeter(max(max(grid.k_maxes), default.k_max) + 1)
    started = time.perf_counter()
    lines, _ = record_lines(pair, prompts, settings, meter, on_line)
    recording_seconds = time.perf_counter() - started
    train, holdout = lines[:train_count], lines[train_count:]
    if meter.repeats == 0:
        raise CalibrationError(
            "No output was long enough to time the models on; give inputs that produce some output."
        )

    costs = meter.costs()
    costs = CostModel(costs.draft_step, costs.verify, round_overhead(lines))
    cost_samples = meter.samples()
    cost_check = check_costs(lines, costs)

    if on_stage is not None:
        on_stage("fitting and searching")
    started = time.perf_counter()
    fits = {weight: fit_quality(weight, train, holdout) for weight in sorted(set(grid.weights) | {default.confidence_weight})}
    replay_cache: dict[tuple[float, bool], list[ReplayLine]] = {}

    def prepared(weight: float, held_out: bool = False) -> list[ReplayLine]:
        key = (weight, held_out)
        if key not in replay_cache:
            replay_cache[key] = replay_lines(holdout if held_out else train, weight)
        return replay_cache[key]

    result = search(
        prepared, costs, grid, estimator=settings.estimator, curve_for_weight=lambda weight: fits[weight].curve
    )
    search_seconds = time.perf_counter() - started

    def compare(setting: PolicySetting) -> Comparison:
        comparison = Comparison(setting)
        for estimator in ESTIMATORS:
            curve = fits[setting.confidence_weight].curve
            comparison.estimates[estimator] = {
                "train": estimate(estimator, prepared(setting.confidence_weight), setting, costs, curve),
                "holdout": estimate(estimator, prepared(setting.confidence_weight, True), setting, costs, curve),
            }
        return comparison

    target_only = Comparison(None)
    for estimator in ESTIMATORS:
        target_only.estimates[estimator] = {
            "train": target_only_throughput(prepared(default.confidence_weight), costs),
            "holdout": target_only_throughput(prepared(default.confidence_weight, True), costs),
        }

    return CalibrationResult(
        lines=lines,
        train_lines=train_count,
        costs=costs,
        cost_samples=cost_samples,
        cost_check=cost_check,
        fits=fits,
        search=result,
        chosen=compare(result.best),
        default=compare(default),
        target_only=target_only,
        recording_seconds=recording_seconds,
        search_seconds=search_seconds,
    )


def _versions() -> dict[str, str]:
    import transformers

    from cmsd_cli import __version__

    return {"cmsd": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def build_profile(result: CalibrationResult, pair, settings: CalibrationSettings, inputs: dict[str, Any]) -> dict:
    """Build the profile file's content: chosen parameters, fit, costs, search summary and provenance.

    `inputs` describes what was decoded (task, languages, source file, limit) and is stored as is.
    """
    grid = settings.search_grid()
    fit = result.chosen_fit
    return {
        "schema": PROFILE_SCHEMA,
        "kind": PROFILE_KIND,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "models": {"target": pair.target_name, "draft": pair.draft_name, "preset": pair.preset},
        "device": device_description(pair.device),
        "dtype": str(pair.dtype).removeprefix("torch."),
        "versions": _versions(),
        "inputs": {
            **inputs,
            "lines": len(result.lines),
            "train_lines": result.train_lines,
            "holdout_lines": result.holdout_lines,
            "max_new_tokens": settings.max_new_tokens,
            "recording": {"policy": RECORDING_POLICY, "draft_length": settings.draft_length, "verify": RECORDING_VERIFY},
            "recording_seconds": result.recording_seconds,
        },
        "policy": PROFILE_POLICY,
        "policy_params": result.search.best.policy_params(),
        # Verification stays greedy, which is lossless. A relaxed rule always lengthens accepted runs,
        # so a search on speed alone would pick the loosest tolerance. Choosing one needs a quality target.
        "verify": RECORDING_VERIFY,
        "verify_params": {},
        "fit": fit.to_dict(),
        "fits": [
            {key: value for key, value in quality.to_dict().items() if key not in ("bins", "holdout_bins")}
            for quality in result.fits.values()
        ],
        "costs": {**result.costs.to_dict(), "samples": result.cost_samples, "check": result.cost_check},
        "search": {
            "estimator": settings.estimator,
            "grid": grid.to_dict(),
            "candidates": result.search.candidates,
            "seconds": result.search_seconds,
            "per_weight": [
                {
                    "confidence_weight": item.weight,
                    "policy_params": item.setting.policy_params(),
                    "tokens_per_second": item.throughput.tokens_per_second,
                }
                for item in result.search.per_weight
            ],
        },
        "expected": {
            "chosen": result.chosen.to_dict(),
            "default": result.default.to_dict(),
            "target_only": result.target_only.to_dict(),
            "speedup_over_default": {
                estimator: {split: result.speedup_over_default(estimator, split) for split in ("train", "holdout")}
                for estimator in ESTIMATORS
            },
        },
    }
