"""The calibration report: costs, the acceptance curve, fit quality per weight, and the expected speedup."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from cmsd_cli.calibrate.calibration import CalibrationResult, Comparison
from cmsd_cli.calibrate.search import ESTIMATORS, PolicySetting

PLOT_EXTRA_HINT = "install it with: pip install 'cmsd-cli[plot]'"


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed; the message names the extra that provides it."""


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _setting_text(setting: PolicySetting) -> str:
    return (
        f"w={setting.confidence_weight:g} theta={setting.theta_draft:g} "
        f"k={setting.k_min}..{setting.k_max} track={setting.track}"
    )


def costs_table(result: CalibrationResult) -> Table:
    costs = result.costs
    check = result.cost_check
    table = Table(title="Measured costs (median of repeats), with the recording run's medians", title_justify="left")
    table.add_column("step")
    table.add_column("ms", justify="right")
    table.add_column("x verify(1)", justify="right")
    table.add_column("recording run ms (rounds)", justify="right")
    base = costs.verify_seconds(1)

    run_draft = check.get("run_draft_step_seconds")
    table.add_row(
        "draft step",
        f"{costs.draft_step * 1000:.2f}",
        f"{costs.draft_step / base:.2f}",
        "-" if run_draft is None else f"{run_draft * 1000:.2f}",
    )
    run_verify = check.get("run_verify_seconds", {})
    run_rounds = check.get("run_verify_rounds", {})
    for tokens in range(1, len(costs.verify) + 1):
        seconds = costs.verify_seconds(tokens)
        observed = run_verify.get(str(tokens))
        table.add_row(
            f"verify {tokens} tokens",
            f"{seconds * 1000:.2f}",
            f"{seconds / base:.2f}",
            "-" if observed is None else f"{observed * 1000:.2f} ({run_rounds[str(tokens)]})",
        )
    table.add_row("round overhead", f"{costs.round_overhead * 1000:.2f}", f"{costs.round_overhead / base:.2f}", "-")
    return table


def curve_table(result: CalibrationResult) -> Table:
    fit = result.chosen_fit
    table = Table(
        title=f"Acceptance against confidence (w={fit.weight:g}; isotonic fit on {fit.train_tokens} judged train tokens)",
        title_justify="left",
    )
    for name in ("confidence", "train tokens", "observed", "fitted", "held-out tokens", "held-out observed"):
        table.add_column(name, justify="right")
    for train_bin, held_bin in zip(fit.bins, fit.holdout_bins):
        table.add_row(
            f"{train_bin.low:.1f}-{train_bin.high:.1f}",
            str(train_bin.tokens),
            _number(train_bin.observed),
            _number(train_bin.fitted),
            str(held_bin.tokens),
            _number(held_bin.observed),
        )
    return table


def weights_table(result: CalibrationResult, estimator: str) -> Table:
    table = Table(
        title=f"Per confidence weight: fit quality on held-out tokens, best setting on train lines ({estimator})",
        title_justify="left",
    )
    for name in ("w", "Brier", "Brier (constant)", "ECE", "best setting", "tokens/s"):
        table.add_column(name, justify="right" if name != "best setting" else "left")
    best_weights = {item.weight: item for item in result.search.per_weight}
    for weight, fit in result.fits.items():
        item = best_weights.get(weight)
        table.add_row(
            f"{weight:g}",
            _number(fit.brier, 4),
            _number(fit.baseline_brier, 4),
            _number(fit.ece, 4),
            _setting_text(item.setting) if item is not None else "-",
            _number(item.throughput.tokens_per_second, 2) if item is not None else "-",
        )
    return table


def expected_table(result: CalibrationResult) -> Table:
    table = Table(title="Expected throughput under the measured costs", title_justify="left")
    table.add_column("setting")
    for estimator in ESTIMATORS:
        for split in ("train", "held-out"):
            table.add_column(f"{estimator} {split} tok/s", justify="right")
    table.add_column("mean accepted (replay, held-out)", justify="right")

    rows: list[tuple[str, Comparison]] = [
        (f"chosen: {_setting_text(result.search.best)}", result.chosen),
        (f"default: {_setting_text(result.default.setting)}", result.default),
        ("target only", result.target_only),
    ]
    for label, comparison in rows:
        cells = []
        for estimator in ESTIMATORS:
            for split in ("train", "holdout"):
                cells.append(_number(comparison.estimates[estimator][split].tokens_per_second, 2))
        held_out = comparison.estimates["replay"]["holdout"]
        cells.append(_number(held_out.mean_accepted, 2) if comparison.setting is not None else "-")
        table.add_row(label, *cells)
    return table


def print_report(result: CalibrationResult, pair, estimator: str, console: Console) -> None:
    """Print every table and the headline figures."""
    total_rounds = sum(line.iterations for line in result.lines)
    console.print(
        f"Calibrated {pair.target_name} with draft {pair.draft_name} on {len(result.lines)} lines "
        f"({result.train_lines} train, {result.holdout_lines} held out), {total_rounds} rounds, "
        f"recorded in {result.recording_seconds:.1f} s.",
        markup=False,
    )
    console.print(costs_table(result))
    check = result.cost_check["measured_over_predicted"]
    if check is not None:
        console.print(
            f"Cost check: the recording run spent {check:.2f}x the draft and verification time the cost model "
            "predicts for its rounds (1.00 is a perfect match; a shared machine drifts).",
            markup=False,
        )
    console.print(curve_table(result))
    console.print(weights_table(result, estimator))
    console.print(expected_table(result))

    best = result.search.best
    console.print(
        f"Chosen: k_min={best.k_min} k_max={best.k_max} theta_draft={best.theta_draft:g} "
        f"confidence_weight={best.confidence_weight:g} track={best.track} "
        f"(searched {result.search.candidates} settings by the {estimator} estimator).",
        markup=False,
    )
    for split, label in (("train", "train lines"), ("holdout", "held-out lines")):
        replay = result.speedup_over_default("replay", split)
        model = result.speedup_over_default("model", split)
        console.print(
            f"Expected speedup over the default parameters on {label}: {_number(replay, 2)}x (replay), "
            f"{_number(model, 2)}x (fitted curve).",
            markup=False,
        )
    replayed = result.chosen.estimates["replay"]["train"]
    if replayed.drafted:
        console.print(
            f"The replay of the chosen setting charged {replayed.assumed_tokens} of its {replayed.drafted:.0f} "
            "drafted train tokens without a record (drafted after a rejection, past what was recorded).",
            markup=False,
        )
    fit = result.chosen_fit
    console.print(
        f"Fit quality on {fit.holdout_tokens} held-out tokens: Brier {_number(fit.brier, 4)} "
        f"(constant rate: {_number(fit.baseline_brier, 4)}), ECE {_number(fit.ece, 4)}.",
        markup=False,
    )


def require_matplotlib():
    """Import and return matplotlib.pyplot with a file backend, or raise PlotUnavailableError."""
    try:
        import matplotlib
    except ImportError as error:
        raise PlotUnavailableError(f"--plot needs matplotlib, which is not installed; {PLOT_EXTRA_HINT}.") from error
    # A file backend writes the PNG without a display.
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def write_plot(result: CalibrationResult, path: Path) -> None:
    """Write a PNG: observed and fitted acceptance against confidence, and verification cost against tokens."""
    pyplot = require_matplotlib()
    fit = result.chosen_fit
    figure, (curve_axis, cost_axis) = pyplot.subplots(1, 2, figsize=(11, 4))

    centres = [(item.low + item.high) / 2 for item in fit.bins if item.observed is not None]
    observed = [item.observed for item in fit.bins if item.observed is not None]
    held_centres = [(item.low + item.high) / 2 for item in fit.holdout_bins if item.observed is not None]
    held_observed = [item.observed for item in fit.holdout_bins if item.observed is not None]
    steps_x = list(fit.curve.thresholds) + [1.0]
    steps_y = list(fit.curve.acceptance) + [fit.curve.acceptance[-1]]
    curve_axis.step(steps_x, steps_y, where="post", label="isotonic fit", color="tab:blue")
    curve_axis.plot(centres, observed, "o", label="observed (train)", color="tab:blue")
    curve_axis.plot(held_centres, held_observed, "x", label="observed (held out)", color="tab:orange")
    curve_axis.set_xlim(0, 1)
    curve_axis.set_ylim(0, 1.02)
    curve_axis.set_xlabel(f"draft confidence (w={fit.weight:g})")
    curve_axis.set_ylabel("acceptance probability")
    curve_axis.legend(loc="lower right")

    tokens = list(range(1, len(result.costs.verify) + 1))
    cost_axis.plot(tokens, [seconds * 1000 for seconds in result.costs.verify], "o-", label="verify m tokens")
    cost_axis.axhline(result.costs.draft_step * 1000, color="tab:green", linestyle="--", label="one draft step")
    cost_axis.set_xlabel("tokens in the target pass (m)")
    cost_axis.set_ylabel("ms")
    cost_axis.set_ylim(bottom=0)
    cost_axis.legend(loc="upper left")

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
