"""Progress over input lines (or any countable items), with elapsed time and ETA, on a rich console."""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.text import Text


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class ElapsedAndEtaColumn(ProgressColumn):
    """Elapsed time, plus the estimated time left once the total and a rate are known."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        text = f"{_clock(elapsed or 0)} elapsed"
        if task.total is not None and not task.finished:
            remaining = task.time_remaining
            text += f", ETA {_clock(remaining)}" if remaining is not None else ", ETA --:--"
        return Text(text, style="progress.remaining")


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
