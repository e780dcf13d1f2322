"""A rich live view of a run over input lines: progress, and each draft-and-verify iteration of the current line.

Three calls drive it, so it depends on no command or model code: `start_line` before a line,
`on_iteration` as the engine's per-iteration callback, and `finish_line` after it. Everything is
drawn on the console it is given (stderr in the CLI), never on stdout.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cmsd_cli.ui.progress import make_progress
from cmsd_cli.ui.summary import RunTotals, format_rate

ACCEPTED_STYLE = "bold green"
RELAXED_STYLE = "bold yellow"
REJECTED_STYLE = "red strike"
TARGET_STYLE = "bold cyan"

# Visible stand-ins for whitespace inside one token, so a token that is only a space still shows up.
_WHITESPACE_MARKS = str.maketrans({" ": "·", "\n": "↵", "\t": "⇥", "\r": "↵"})


# Short labels for `IterationRecord.draft_stop`, so the column stays narrow.
_STOP_LABELS = {
    "budget": "budget",
    "low_confidence": "low conf",
    "eos": "eos",
    "stop_string": "stop str",
    "token_budget": "max tokens",
    "none": "-",
}


def visible_token(text: str) -> str:
    """Return a token's text with its whitespace made visible."""
    return text.translate(_WHITESPACE_MARKS) if text else "∅"


@dataclass
class IterationView:
    """The displayed part of one `IterationRecord`, with token texts in place of ids and its number in the line."""

    number: int
    budget: int
    draft_length: int
    tokens: list[str]
    entropy: list[float]
    margin: list[float]
    accepted: int
    relaxed_positions: list[int]
    target_tokens: list[str]
    draft_stop: str


class LiveView:
    """Progress over lines plus the current line's iterations, redrawn several times a second.

    `token_text` turns one token id into its text, and `decode` a list of ids into the output text.
    `total` is the number of lines, or None when it is unknown (input from a pipe).
    """

    def __init__(
        self,
        console: Console,
        *,
        token_text: Callable[[int], str],
        decode: Callable[[list[int]], str],
        total: Optional[int],
        description: str,
        iterations_shown: int = 6,
    ) -> None:
        self.console = console
        self.token_text = token_text
        self.decode = decode
        self.totals = RunTotals()

        self._progress = make_progress(console)
        self._task = self._progress.add_task(description, total=total)
        self._lock = threading.Lock()
        self._live: Optional[Live] = None

        self._line_number = 0
        self._line_preview = ""
        self._line_started = 0.0
        self._iterations: deque[IterationView] = deque(maxlen=iterations_shown)
        self._line_iterations = 0
        self._line_drafted = 0
        self._line_accepted = 0
        self._line_tokens: list[int] = []
        self._line_output = ""

    def __enter__(self) -> "LiveView":
        # Results go to stdout, so only stderr is redirected above the view (stray library warnings).
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def print_above(self, renderable: RenderableType) -> None:
        """Print a line above the live view, for results shown on the same terminal."""
        self.console.print(renderable, markup=False, highlight=False, soft_wrap=True)

    def start_line(self, number: int, text: str) -> None:
        """Show line `number` (1-based) as the current one, with its input text as a preview."""
        with self._lock:
            self._line_number = number
            self._line_preview = " ".join(text.split())
            self._line_started = time.perf_counter()
            self._iterations.clear()
            self._line_iterations = 0
            self._line_drafted = 0
            self._line_accepted = 0
            self._line_tokens = []
            self._line_output = ""

    def on_iteration(self, record) -> None:
        """Engine callback: record one draft-and-verify iteration of the current line."""
        view = IterationView(
            number=self._line_iterations + 1,
            budget=record.budget,
            draft_length=record.draft_length,
            tokens=[visible_token(self.token_text(token)) for token in record.draft_tokens],
            entropy=list(record.entropy),
            margin=list(record.margin),
            accepted=record.accepted,
            relaxed_positions=list(record.relaxed_positions),
            target_tokens=[visible_token(self.token_text(token)) for token in record.emitted[record.accepted :]],
            draft_stop=record.draft_stop,
        )
        tokens = self._line_tokens + list(record.emitted)
        output = self.decode(tokens)
        with self._lock:
            self._iterations.append(view)
            self._line_iterations += 1
            self._line_drafted += record.draft_length
            self._line_accepted += record.accepted
            self._line_tokens = tokens
            self._line_output = output

    def finish_line(self, stats: Optional[dict], *, empty: bool = False, truncated: bool = False) -> None:
        """Count a finished line: `stats` of its generation, or None when no model call was made."""
        with self._lock:
            self.totals.lines += 1
            self.totals.empty_lines += int(empty)
            self.totals.truncated_lines += int(truncated)
            if stats is not None:
                self.totals.add(stats)
            self._progress.advance(self._task)

    def _render(self) -> RenderableType:
        with self._lock:
            parts: list[RenderableType] = [self._progress.get_renderable()]
            if self._line_number:
                parts.extend(self._current_line())
            return Group(*parts)

    def _current_line(self) -> list[RenderableType]:
        heading = Text.assemble(
            (f"Line {self._line_number}: ", "bold"), (self._line_preview, "dim"), no_wrap=True, overflow="ellipsis"
        )
        output = Text.assemble(("Output: ", "bold"), self._line_output.replace("\n", " "))
        output.truncate(self.console.width * 2, overflow="ellipsis")
        return [heading, self._iteration_table(), output, self._stats_line(), self._legend()]

    def _iteration_table(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=False, collapse_padding=True)
        # Counts keep their width; the token column gives way on a narrow terminal.
        table.add_column("iter", justify="right", no_wrap=True)
        table.add_column("budget", justify="right", no_wrap=True)
        table.add_column("drafted", justify="right", no_wrap=True)
        table.add_column("acc", justify="right", no_wrap=True)
        table.add_column("draft tokens / entropy H / margin m", overflow="ellipsis")
        table.add_column("target", no_wrap=True)
        table.add_column("stop", no_wrap=True)
        for view in self._iterations:
            table.add_row(
                str(view.number),
                str(view.budget),
                str(view.draft_length),
                str(view.accepted),
                self._draft_grid(view),
                Text(" ".join(view.target_tokens), style=TARGET_STYLE),
                _STOP_LABELS.get(view.draft_stop, view.draft_stop),
            )
        return table

    @staticmethod
    def _draft_grid(view: IterationView) -> RenderableType:
        if not view.tokens:
            return Text("(no draft)", style="dim")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim")
        for _ in view.tokens:
            grid.add_column(justify="center", no_wrap=True)

        relaxed = set(view.relaxed_positions)
        styled = []
        for position, token in enumerate(view.tokens):
            if position >= view.accepted:
                style = REJECTED_STYLE
            elif position in relaxed:
                style = RELAXED_STYLE
            else:
                style = ACCEPTED_STYLE
            styled.append(Text(token, style=style))
        grid.add_row("", *styled)
        grid.add_row("H", *(f"{value:.2f}" for value in view.entropy))
        grid.add_row("m", *(f"{value:.2f}" for value in view.margin))
        return grid

    def _stats_line(self) -> Text:
        elapsed = time.perf_counter() - self._line_started if self._line_started else 0.0
        this_line = RunTotals(
            new_tokens=len(self._line_tokens),
            drafted=self._line_drafted,
            accepted=self._line_accepted,
            iterations=self._line_iterations,
            seconds=elapsed,
        )
        totals = self.totals
        return Text.assemble(
            ("This line: ", "bold"),
            f"acceptance {format_rate(this_line.acceptance_rate, '.0%')} · "
            f"mean accepted {format_rate(this_line.mean_accepted, '.2f')} per iteration · "
            f"{format_rate(this_line.tokens_per_second, '.1f')} tokens/s · {self._line_iterations} target calls\n",
            ("All lines: ", "bold"),
            f"{totals.new_tokens} tokens · acceptance {format_rate(totals.acceptance_rate, '.0%')} · "
            f"mean accepted {format_rate(totals.mean_accepted, '.2f')} · "
            f"{format_rate(totals.tokens_per_second, '.1f')} tokens/s",
        )

    @staticmethod
    def _legend() -> Text:
        return Text.assemble(
            ("accepted", ACCEPTED_STYLE),
            " · ",
            ("relaxed accept", RELAXED_STYLE),
            " · ",
            ("rejected", REJECTED_STYLE),
            " · ",
            ("target token", TARGET_STYLE),
            " · '·' is a space, '↵' a newline",
            style="dim",
        )
