"""Counters summed over a run of many generations, and the table that reports them."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table


@dataclass
class RunTotals:
    """Sums of the engine's per-generation `stats` over every line of a run."""

    lines: int = 0
    empty_lines: int = 0
    truncated_lines: int = 0
    generations: int = 0
    new_tokens: int = 0
    target_calls: int = 0
    drafted: int = 0
    accepted: int = 0
    iterations: int = 0
    rollbacks: int = 0
    seconds: float = 0.0

    def add(self, stats: dict) -> None:
        """Add the `stats` dict of one `GenerationResult`."""
        self.generations += 1
        self.new_tokens += int(stats.get("new_tokens", 0))
        self.target_calls += int(stats.get("target_calls", 0))
        self.drafted += int(stats.get("drafted", 0))
        self.accepted += int(stats.get("accepted", 0))
        self.iterations += int(stats.get("iterations", 0))
        self.rollbacks += int(stats.get("rollbacks", 0))
        self.seconds += float(stats.get("seconds", 0.0))

    # Each rate is None while its denominator is zero, because it is undefined then (as null in JSONL).
    @property
    def acceptance_rate(self) -> float | None:
        return _ratio(self.accepted, self.drafted)

    @property
    def mean_accepted(self) -> float | None:
        """Accepted draft tokens per iteration."""
        return _ratio(self.accepted, self.iterations)

    @property
    def rollback_rate(self) -> float | None:
        return _ratio(self.rollbacks, self.iterations)

    @property
    def tokens_per_second(self) -> float | None:
        return _ratio(self.new_tokens, self.seconds)

    @property
    def tokens_per_target_call(self) -> float | None:
        return _ratio(self.new_tokens, self.target_calls)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def format_rate(value: float | None, spec: str) -> str:
    """Format a rate with `spec`, or as "-" when it is undefined (None)."""
    return "-" if value is None else format(value, spec)


def summary_table(totals: RunTotals, *, title: str = "Summary") -> Table:
    """Build a two-column table of the run's counts, rates and speed."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(justify="right")

    line_note = []
    if totals.empty_lines:
        line_note.append(f"{totals.empty_lines} empty")
    if totals.truncated_lines:
        line_note.append(f"{totals.truncated_lines} truncated")
    lines = f"{totals.lines}" + (f" ({', '.join(line_note)})" if line_note else "")

    table.add_row("lines", lines)
    table.add_row("new tokens", f"{totals.new_tokens}")
    table.add_row("target calls", f"{totals.target_calls}")
    table.add_row("tokens per target call", format_rate(totals.tokens_per_target_call, ".2f"))
    table.add_row("drafted / accepted", f"{totals.drafted} / {totals.accepted}")
    table.add_row("acceptance rate", format_rate(totals.acceptance_rate, ".1%"))
    table.add_row("mean accepted per iteration", format_rate(totals.mean_accepted, ".2f"))
    table.add_row("rollback rate", format_rate(totals.rollback_rate, ".1%"))
    table.add_row("generation time", f"{totals.seconds:.1f} s")
    table.add_row("tokens per second", format_rate(totals.tokens_per_second, ".1f"))
    return table
