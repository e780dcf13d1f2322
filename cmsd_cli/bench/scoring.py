"""Totals, rates, agreement with ar and quality scores of benchmark rows."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cmsd_cli.bench.methods import BASELINE
from cmsd_cli.bench.results import BenchResult, MethodResult
from cmsd_cli.metrics import bleu, chrf, consistency_bleu, rouge, speedup, tokens_per_second

logger = logging.getLogger(__name__)


def _sum_or_none(values: Sequence[int | None]) -> int | None:
    if any(value is None for value in values):
        return None
    return sum(values)  # type: ignore[arg-type]


def _ratio(numerator: int | None, denominator: int | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _fill_speed_and_counters(result: MethodResult) -> None:
    runs = result.inputs
    result.seconds = sum(run.seconds for run in runs)
    result.new_tokens = sum(len(run.tokens) for run in runs)
    result.tokens_per_second = tokens_per_second(result.new_tokens, result.seconds)
    result.target_calls = _sum_or_none([run.target_calls for run in runs])
    result.draft_steps = _sum_or_none([run.draft_steps for run in runs])

    # Acceptance figures describe drafting, so a method that drafted nothing has none.
    drafted = _sum_or_none([run.drafted for run in runs])
    if drafted:
        accepted = _sum_or_none([run.accepted for run in runs])
        iterations = _sum_or_none([run.iterations for run in runs])
        rollbacks = _sum_or_none([run.rollbacks for run in runs])
        result.acceptance_rate = _ratio(accepted, drafted)
        result.mean_accepted = _ratio(accepted, iterations)
        result.rollback_rate = _ratio(rollbacks, iterations)


def fill_figures(bench: BenchResult, references: Sequence[str] | None) -> None:
    """Totals, speedups against ar, agreement with ar, and quality against references."""
    scored = [result for result in bench.methods if result.error is None and result.inputs]
    for result in scored:
        _fill_speed_and_counters(result)

    baseline = next((result for result in scored if result.name == BASELINE), None)
    if baseline is None:
        logger.warning("Method 'ar' is not in the benchmark, so speedup and agreement with ar are not reported.")
    has_text = all(run.text is not None for result in scored for run in result.inputs)
    if references is not None:
        references = [reference.strip() for reference in references]

    for result in scored:
        if baseline is not None:
            result.speedup_vs_ar = speedup(baseline.seconds, result.seconds)
            same = sum(run.tokens == ar_run.tokens for run, ar_run in zip(result.inputs, baseline.inputs))
            result.identical_to_ar = same / len(result.inputs)
            if has_text:
                consistency = consistency_bleu(result.texts, baseline.texts, target_language=bench.target_language)
                result.consistency_bleu = consistency.score
                bench.signatures["consistency_bleu"] = consistency.signature

        if references is None or not has_text:
            continue
        if bench.task == "translate":
            bleu_score = bleu(result.texts, references, target_language=bench.target_language)
            chrf_score = chrf(result.texts, references)
            result.bleu, result.chrf = bleu_score.score, chrf_score.score
            bench.signatures["bleu"] = bleu_score.signature
            bench.signatures["chrf"] = chrf_score.signature
        else:
            rouge_scores = rouge(result.texts, references)
            result.rouge1, result.rouge2, result.rougeL = (
                rouge_scores.rouge1,
                rouge_scores.rouge2,
                rouge_scores.rougeL,
            )
            bench.signatures["rouge"] = rouge_scores.signature
