"""A PNG summary of a benchmark: speedup per method and, for `cmsd`, draft length and acceptance per iteration.

matplotlib comes with the `plot` extra and is imported only when a plot is requested.
"""

from __future__ import annotations

from pathlib import Path

from cmsd_cli.bench.runner import BenchResult

PLOT_EXTRA_HINT = "install it with: pip install 'cmsd-cli[plot]'"
TRACED_METHOD = "cmsd"


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed; the message names the extra that provides it."""


def require_matplotlib():
    """Import and return matplotlib.pyplot with a file backend, or raise PlotUnavailableError."""
    try:
        import matplotlib
    except ImportError as error:
        raise PlotUnavailableError(f"--plot needs matplotlib, which is not installed; {PLOT_EXTRA_HINT}.") from error
    # A file backend: plots are written to disk, and no display is needed (servers, CI).
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _iteration_series(bench: BenchResult, name: str) -> tuple[list[int], list[int], list[float], list[int]] | None:
    """Budget, drafted tokens and accepted share per iteration of `name`, over all inputs in order.

    The last list contains the iteration numbers (1-based) where each input after the first starts.
    """
    try:
        result = bench.method(name)
    except KeyError:
        return None
    budgets: list[int] = []
    drafted: list[int] = []
    accepted_share: list[float] = []
    input_starts: list[int] = []
    for run in result.inputs:
        if budgets:
            input_starts.append(len(budgets) + 1)
        for record in run.trace or []:
            budgets.append(record.budget)
            drafted.append(record.draft_length)
            accepted_share.append(record.accepted / record.draft_length if record.draft_length else float("nan"))
    if not drafted:
        return None
    return budgets, drafted, accepted_share, input_starts


def _bar_colour(result) -> str:
    if result.name == "ar":
        return "tab:gray"
    if result.lossless:
        return "tab:blue"
    return "tab:orange"


def write_plot(bench: BenchResult, path: Path) -> None:
    """Write the PNG; the iteration panel appears only when `cmsd` ran and drafted."""
    pyplot = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    series = _iteration_series(bench, TRACED_METHOD)
    rows = 2 if series is not None else 1
    figure, axes = pyplot.subplots(rows, 1, figsize=(9, 3.5 * rows), squeeze=False)

    speed_axis = axes[0][0]
    measured = [result for result in bench.methods if result.speedup_vs_ar is not None]
    names = [result.name for result in measured]
    values = [result.speedup_vs_ar for result in measured]
    colours = [_bar_colour(result) for result in measured]
    bars = speed_axis.bar(names, values, color=colours)
    speed_axis.bar_label(bars, labels=[f"{value:.2f}x" for value in values], padding=2)
    speed_axis.set_ylim(0, max(values + [1.0]) * 1.18)  # room for the labels above the bars
    speed_axis.axhline(1.0, color="black", linewidth=0.8)
    speed_axis.set_ylabel("speedup vs ar")
    speed_axis.set_title(f"{bench.task}: {bench.inputs} inputs (blue lossless, orange relaxed)")
    speed_axis.tick_params(axis="x", labelrotation=30)

    if series is not None:
        budgets, drafted, accepted_share, input_starts = series
        iterations = range(1, len(drafted) + 1)
        length_axis = axes[1][0]
        for start in input_starts:
            length_axis.axvline(start - 0.5, color="lightgray", linewidth=0.8, linestyle=":")
        length_axis.step(iterations, budgets, where="mid", color="tab:gray", label="budget")
        length_axis.step(iterations, drafted, where="mid", color="tab:blue", label="drafted")
        length_axis.set_xlabel(f"{TRACED_METHOD} iteration (all inputs in order, dotted lines between inputs)")
        length_axis.set_ylabel("draft tokens")
        length_axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        length_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        share_axis = length_axis.twinx()
        share_axis.plot(iterations, accepted_share, ".", color="tab:green", markersize=4, label="accepted share")
        share_axis.set_ylim(-0.05, 1.05)
        share_axis.set_ylabel("accepted / drafted")
        handles = length_axis.get_legend_handles_labels()[0] + share_axis.get_legend_handles_labels()[0]
        # Above the axes, so the legend never covers a data point.
        length_axis.legend(
            handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, frameon=False, fontsize="small"
        )

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
