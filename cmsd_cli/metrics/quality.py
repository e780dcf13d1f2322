"""Corpus-level output quality: BLEU and chrF (sacrebleu), ROUGE F-measure (rouge-score), consistency.

Every score comes with a signature string that states how it was computed, so a reported figure
can be reproduced: sacrebleu's own signature for BLEU and chrF, and one built here for ROUGE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class CorpusScore:
    """One corpus-level score and the signature string that reproduces it."""

    score: float
    signature: str


@dataclass(frozen=True)
class RougeScores:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures over a corpus, each in [0, 1]."""

    rouge1: float
    rouge2: float
    rougeL: float
    signature: str

    def as_dict(self) -> dict[str, float]:
        return {"rouge1": self.rouge1, "rouge2": self.rouge2, "rougeL": self.rougeL}


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(
            f"Got {len(hypotheses)} hypotheses but {len(references)} references. "
            "Give exactly one reference line per hypothesis."
        )


def bleu(hypotheses: Sequence[str], references: Sequence[str], *, target_language: str | None = None) -> CorpusScore:
    """Score `hypotheses` against one reference each with sacrebleu's corpus BLEU (0 to 100).

    `target_language` (an ISO code such as "de" or "zh") lets sacrebleu pick its tokenizer for that
    language. Without it sacrebleu uses its default "13a" tokenizer.
    """
    _check_lengths(hypotheses, references)
    metric = BLEU(trg_lang=target_language or "")
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return CorpusScore(score=result.score, signature=str(metric.get_signature()))


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> CorpusScore:
    """Score `hypotheses` against one reference each with sacrebleu's corpus chrF (0 to 100)."""
    _check_lengths(hypotheses, references)
    metric = CHRF()
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return CorpusScore(score=result.score, signature=str(metric.get_signature()))


def rouge(hypotheses: Sequence[str], references: Sequence[str], *, use_stemmer: bool = True) -> RougeScores:
    """Average the per-pair ROUGE-1, ROUGE-2 and ROUGE-L F-measures of rouge-score over the corpus.

    rouge-score lowercases and keeps only ASCII letters and digits, so it suits English summaries.
    Text in other scripts scores 0.
    """
    _check_lengths(hypotheses, references)
    if not hypotheses:
        raise ValueError("ROUGE needs at least one hypothesis and reference pair.")

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references):
        # rouge-score takes the reference first: score(target, prediction).
        scores = scorer.score(reference, hypothesis)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure

    count = len(hypotheses)
    signature = f"rouge-score:{version('rouge-score')}|stemmer:{'yes' if use_stemmer else 'no'}|score:fmeasure|agg:mean"
    return RougeScores(
        rouge1=totals["rouge1"] / count,
        rouge2=totals["rouge2"] / count,
        rougeL=totals["rougeL"] / count,
        signature=signature,
    )


def consistency_bleu(
    outputs: Sequence[str], baseline_outputs: Sequence[str], *, target_language: str | None = None
) -> CorpusScore:
    """BLEU of a method's outputs against the target-only greedy outputs of the same inputs.

    Identical corpora score exactly 100. sacrebleu alone would give less when every line is shorter
    than four words (no 4-grams to match), which would misreport a lossless method as inconsistent.
    """
    _check_lengths(outputs, baseline_outputs)
    result = bleu(outputs, baseline_outputs, target_language=target_language)
    if list(outputs) == list(baseline_outputs):
        return CorpusScore(score=100.0, signature=result.signature)
    return result
