"""The live view, progress and summary of `cmsd_cli.ui`, rendered into an in-memory console."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

import tiny_models
from cmsd_cli.engine import IterationRecord, speculative_generate
from cmsd_cli.ui.live import ACCEPTED_STYLE, REJECTED_STYLE, RELAXED_STYLE, LiveView, visible_token
from cmsd_cli.ui.progress import ElapsedAndEtaColumn, make_progress
from cmsd_cli.ui.summary import RunTotals, summary_table


def captured_console(width: int = 160) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system="truecolor")


def plain_text(console: Console, renderable) -> str:
    plain = Console(file=io.StringIO(), width=console.width, color_system=None)
    plain.print(renderable)
    return plain.file.getvalue()


def token_name(token: int) -> str:
    return f"t{token}"


def make_view(console: Console, total: int | None = 3) -> LiveView:
    return LiveView(
        console,
        token_text=token_name,
        decode=lambda tokens: " ".join(token_name(token) for token in tokens),
        total=total,
        description="Translating en→de",
    )


def record(draft_tokens: list[int], accepted: int, target_token: int, relaxed: list[int] | None = None):
    count = len(draft_tokens)
    return IterationRecord(
        budget=count,
        draft_length=count,
        draft_tokens=draft_tokens,
        entropy=[0.11 * (position + 1) for position in range(count)],
        margin=[0.9 - 0.1 * position for position in range(count)],
        confidence=[0.5] * count,
        accepted=accepted,
        emitted=draft_tokens[:accepted] + [target_token],
        rollback=accepted < count,
        draft_stop="budget",
        relaxed_positions=relaxed or [],
    )


def test_rows_show_real_engine_iterations() -> None:
    target = tiny_models.llama()
    draft = tiny_models.perturbed_copy(target, noise=0.05)
    console = captured_console()
    view = make_view(console)

    view.start_line(1, "a real line")
    result = speculative_generate(
        target, draft, tiny_models.random_prompt(6, seed=1), max_new_tokens=24, policy="cmsd",
        on_iteration=view.on_iteration,
    )  # fmt: skip
    shown = plain_text(console, view._render())

    rows = [line.split() for line in shown.splitlines()]
    shown_iterations = result.trace[-6:]
    first_number = len(result.trace) - len(shown_iterations) + 1
    for number, iteration in enumerate(shown_iterations, start=first_number):
        counts = [str(number), str(iteration.budget), str(iteration.draft_length), str(iteration.accepted)]
        assert any(row[:4] == counts for row in rows), (counts, shown)
    drafted = [iteration for iteration in shown_iterations if iteration.draft_length]
    assert drafted, "the cmsd policy drafts at least k_min = 1 token per iteration"
    for iteration in drafted:
        assert "H " + " ".join(f"{value:.2f}" for value in iteration.entropy) in shown
        assert "m " + " ".join(f"{value:.2f}" for value in iteration.margin) in shown


def test_line_stats_follow_iterations() -> None:
    console = captured_console()
    view = make_view(console)

    view.start_line(2, "second line")
    view.on_iteration(record([5, 6, 7, 8], accepted=2, target_token=9))
    view.on_iteration(record([10, 11], accepted=2, target_token=12))
    shown = plain_text(console, view._render())

    # 4 of 6 drafted tokens accepted over 2 iterations.
    assert "Line 2: second line" in shown
    assert "acceptance 67%" in shown
    assert "mean accepted 2.00 per iteration" in shown
    assert "2 target calls" in shown
    assert "Output: t5 t6 t9 t10 t11 t12" in shown


def test_rates_before_any_draft_show_dash() -> None:
    console = captured_console()
    view = make_view(console)

    view.start_line(1, "first line")
    shown = plain_text(console, view._render())

    assert "This line: acceptance - · mean accepted - per iteration" in shown
    assert "All lines: 0 tokens · acceptance - · mean accepted - · - tokens/s" in shown


def test_summary_table_without_drafts_shows_dash() -> None:
    totals = RunTotals(lines=1, empty_lines=1)

    shown = plain_text(captured_console(), summary_table(totals, title="Run"))

    assert "0 / 0" in shown
    assert re.search(r"acceptance rate\s+- *\n", shown)
    assert re.search(r"mean accepted per iteration\s+- *\n", shown)
    assert re.search(r"tokens per second\s+- *\n", shown)


def test_draft_tokens_coloured_by_outcome() -> None:
    console = captured_console()
    view = make_view(console)
    view.start_line(1, "x")
    view.on_iteration(record([21, 22, 23, 24], accepted=2, target_token=30, relaxed=[1]))

    segments = list(console.render(view._render()))
    styles = {segment.text.strip(): segment.style for segment in segments if segment.text.strip()}

    assert styles["t21"] == console.get_style(ACCEPTED_STYLE)
    assert styles["t22"] == console.get_style(RELAXED_STYLE)
    assert styles["t23"] == console.get_style(REJECTED_STYLE)
    assert styles["t24"] == console.get_style(REJECTED_STYLE)


def test_only_recent_iterations_are_kept() -> None:
    console = captured_console()
    view = make_view(console)
    view.start_line(1, "x")
    for number in range(10):
        view.on_iteration(record([40 + number], accepted=1, target_token=3))

    shown = plain_text(console, view._render())

    numbers = [row.split()[0] for row in shown.splitlines() if re.match(r"\s+\d+\s+1\s+1\s+1\s", row)]
    assert numbers == ["5", "6", "7", "8", "9", "10"]


def test_target_only_iteration_shows_no_draft() -> None:
    console = captured_console()
    view = make_view(console)
    view.start_line(1, "x")
    view.on_iteration(
        IterationRecord(
            budget=0, draft_length=0, draft_tokens=[], entropy=[], margin=[], confidence=[],
            accepted=0, emitted=[7], rollback=False, draft_stop="none",
        )
    )  # fmt: skip

    shown = plain_text(console, view._render())

    assert "(no draft)" in shown
    assert "t7" in shown


def test_finish_line_adds_to_totals() -> None:
    view = make_view(captured_console())
    stats = {"new_tokens": 10, "target_calls": 4, "drafted": 12, "accepted": 6, "iterations": 4, "rollbacks": 3,
             "seconds": 2.0}  # fmt: skip

    view.finish_line(stats)
    view.finish_line(None, empty=True)

    assert view.totals.lines == 2
    assert view.totals.empty_lines == 1
    assert view.totals.new_tokens == 10
    assert view.totals.acceptance_rate == pytest.approx(0.5)
    assert view.totals.tokens_per_second == pytest.approx(5.0)


def test_live_context_draws_on_its_console() -> None:
    console = captured_console()
    view = make_view(console)

    with view:
        view.start_line(1, "drawn line")
        view.on_iteration(record([5, 6], accepted=1, target_token=7))
        view.finish_line({"new_tokens": 2, "iterations": 1, "target_calls": 1, "drafted": 2, "accepted": 1})

    output = console.file.getvalue()
    assert "drawn line" in output
    assert "1/3" in output


def test_summary_table_values() -> None:
    totals = RunTotals(lines=3, empty_lines=1, truncated_lines=1)
    totals.add({"new_tokens": 30, "target_calls": 10, "drafted": 40, "accepted": 20, "iterations": 10,
                "rollbacks": 5, "seconds": 3.0})  # fmt: skip

    shown = plain_text(captured_console(), summary_table(totals, title="Run"))

    assert "3 (1 empty, 1 truncated)" in shown
    assert "40 / 20" in shown
    assert "50.0%" in shown
    assert "3.00" in shown  # tokens per target call
    assert "2.00" in shown  # mean accepted per iteration
    assert "10.0" in shown  # tokens per second


def test_progress_without_total_has_no_eta() -> None:
    console = captured_console()
    progress = make_progress(console)
    unknown = progress.add_task("Reading", total=None)
    known = progress.add_task("Counting", total=4)
    progress.advance(unknown)
    progress.advance(known, 2)

    shown = plain_text(console, progress.get_renderable())

    unknown_row, known_row = shown.splitlines()
    assert "1/?" in unknown_row
    assert "ETA" not in unknown_row
    assert "2/4" in known_row
    assert "ETA" in known_row


def test_visible_token_marks_whitespace() -> None:
    assert visible_token(" Haus") == "·Haus"
    assert visible_token("\n") == "↵"
    assert visible_token("") == "∅"


def test_eta_counts_down_within_an_item() -> None:
    column = ElapsedAndEtaColumn()
    task = SimpleNamespace(id=0, completed=0, total=4)

    assert column._remaining(task, elapsed=5.0) is None

    # The first item took 10 s, so three items are left at 10 s each.
    task.completed = 1
    assert column._remaining(task, elapsed=10.0) == pytest.approx(30.0)
    assert column._remaining(task, elapsed=14.0) == pytest.approx(26.0)
    assert column._remaining(task, elapsed=50.0) == 0.0

    # The second item ended at 50 s: 25 s per item, two left.
    task.completed = 2
    assert column._remaining(task, elapsed=50.0) == pytest.approx(50.0)
