"""Quality and speed measures for decoding runs."""

from cmsd_cli.metrics.quality import (
    ROUGE_TYPES,
    CorpusScore,
    RougeScores,
    bleu,
    chrf,
    consistency_bleu,
    rouge,
)
from cmsd_cli.metrics.speed import median_seconds, speedup, tokens_per_second

__all__ = [
    "ROUGE_TYPES",
    "CorpusScore",
    "RougeScores",
    "bleu",
    "chrf",
    "consistency_bleu",
    "median_seconds",
    "rouge",
    "speedup",
    "tokens_per_second",
]
