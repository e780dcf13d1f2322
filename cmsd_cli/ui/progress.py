"""Progress over input lines (or any countable items), with elapsed time and ETA, on a rich console."""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class ElapsedAndEtaColumn(ProgressColumn):
    """Elapsed time, plus the estimated time left once the total and one finished item are known.

    The estimate is the mean time per finished item times the items left, minus the time already
    spent on the current item, so it counts down between items instead of standing still.
    """

    def __init__(self) -> None:
        super().__init__()
        # task id -> (completed count, elapsed seconds when that count was first seen)
        self._last_change: dict[TaskID, tuple[float, float]] = {}

    def render(self, task: Task) -> Text:
        elapsed = (task.finished_time if task.finished else task.elapsed) or 0.0
        text = f"{_clock(elapsed)} elapsed"
        if task.total is not None and not task.finished:
            remaining = self._remaining(task, elapsed)
            text += f", ETA {_clock(remaining)}" if remaining is not None else ", ETA --:--"
        return Text(text, style="progress.remaining")

    def _remaining(self, task: Task, elapsed: float) -> float | None:
        completed, changed_at = self._last_change.get(task.id, (0.0, 0.0))
        if task.completed != completed:
            completed, changed_at = task.completed, elapsed
            self._last_change[task.id] = (completed, changed_at)
        if completed <= 0 or task.total is None:
            return None
        per_item = changed_at / completed
        return max(0.0, per_item * (task.total - completed) - (elapsed - changed_at))


def make_progress(console: Console, *, unit: str = "lines", transient: bool = False) -> Progress:
    """Build a progress display: spinner, description, bar, done/total `unit`, elapsed time and ETA.

    Use it as a context manager on its own, or embed `progress.get_renderable()` in a larger live
    view (as `LiveView` does) without starting it. A task with `total=None` shows a pulsing bar
    and no ETA, for input whose length is unknown until it ends (a pipe).
    """
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        ElapsedAndEtaColumn(),
        console=console,
        transient=transient,
    )
