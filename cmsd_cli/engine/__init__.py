"""The decoding loop, KV-cache rollback and the target-only baseline."""

from cmsd_cli.engine.loop import speculative_generate
from cmsd_cli.engine.records import GenerationResult, IterationRecord

__all__ = ["GenerationResult", "IterationRecord", "speculative_generate"]
