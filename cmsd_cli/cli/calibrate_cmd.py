"""`cmsd calibrate`: measure how acceptance follows draft confidence on this machine, and write a profile."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console

from cmsd_cli.app import app
from cmsd_cli.cli.errors import UserInputError, fail
from cmsd_cli.cli.help_format import PlainFlagCommand
from cmsd_cli.cli.options import ModelOptions, model_options
from cmsd_cli.ui.console import attach_log_handler, detach_log_handler, library_progress_bars_disabled, stderr_console

logger = logging.getLogger(__name__)

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C
DEFAULT_PROFILE = Path("cmsd-profile.json")
# The --max-new-tokens defaults of `cmsd translate` and `cmsd summarize`, so calibration sees outputs of the same length.
TASK_MAX_NEW_TOKENS = {"translate": 128, "summarize": 160}


@dataclass(frozen=True)
class CalibrateRequest:
    """The command's own options, apart from the shared model options."""

    task: str
    source: Path
    src: Optional[str]
    tgt: Optional[str]
    limit: Optional[int]
    out: Path
    plot: Optional[Path]
    max_new_tokens: Optional[int]
    draft_length: int
    holdout: float
    repeats: int
    estimator: str


@app.command(
    cls=PlainFlagCommand,
    help="Decode inputs with a fixed draft length and greedy verification, fit how often the target accepts "
    "a draft token at each draft confidence, time draft steps and target passes on this machine, and pick "
    "the cmsd policy parameters (k_min, k_max, theta_draft, confidence weight) with the highest expected "
    "tokens per second. The report goes to stdout and the profile to --out; translate, summarize and bench "
    "read it with --profile. The last --holdout share of the lines checks the fit and the choice.",
)
@model_options
def calibrate(
    task: Annotated[
        Literal["translate", "summarize"], typer.Option("--task", help="Task to calibrate for.", show_default=False)
    ],
    source: Annotated[
        Path, typer.Option("--source", help="Input file, one sentence or document per line.", show_default=False)
    ],
    src: Annotated[
        Optional[str], typer.Option("--src", help="Source language code for translate. Default: en.")
    ] = None,
    tgt: Annotated[
        Optional[str], typer.Option("--tgt", help="Target language code for translate, such as 'de'.")
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", help="Use only the first N non-empty lines. Default: all.", min=2)
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Profile file to write (JSON).")] = DEFAULT_PROFILE,
    plot: Annotated[
        Optional[Path],
        typer.Option("--plot", help="Also write a PNG of acceptance against confidence and of the measured costs."),
    ] = None,
    max_new_tokens: Annotated[
        Optional[int],
        typer.Option(
            "--max-new-tokens",
            help="Maximum new tokens per input line. Default: that of the task's command (translate 128, summarize 160).",
            min=1,
        ),
    ] = None,
    draft_length: Annotated[
        int,
        typer.Option(
            "--draft-length",
            help="Tokens drafted every round while recording, and the largest k_max searched.",
            min=1,
        ),
    ] = 8,
    holdout: Annotated[
        float,
        typer.Option("--holdout", help="Share of the lines, from the end, held out to check the fit.", min=0.01, max=0.9),
    ] = 0.2,
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            help="Timing repeats of each draft step and target pass length, taken between input lines "
            "so they see the same machine load as the decoding; the median is used.",
            min=1,
        ),
    ] = 7,
    estimator: Annotated[
        Literal["replay", "model"],
        typer.Option(
            "--estimator",
            help="How the search scores a setting: 'replay' walks the recorded outputs with its rules; "
            "'model' uses the fitted acceptance curve.",
        ),
    ] = "replay",
    models: ModelOptions = ModelOptions(),
) -> None:
    request = CalibrateRequest(
        task, source, src, tgt, limit, out, plot, max_new_tokens, draft_length, holdout, repeats, estimator
    )
    console = stderr_console()
    handler = attach_log_handler(console)
    try:
        check_request(request, models)
        texts = read_source(request)
        with library_progress_bars_disabled(), console.status("Loading models (a first use downloads or converts them)…"):
            pair = models.load_pair()
        run_calibration(console, request, texts, pair)
    except UserInputError as error:
        fail(str(error))
    except KeyboardInterrupt:
        console.print("Interrupted: no profile written.", markup=False, highlight=False)
        raise typer.Exit(INTERRUPTED_EXIT_CODE)
    finally:
        detach_log_handler(handler)


def check_request(request: CalibrateRequest, models: ModelOptions) -> None:
    """Check everything a user can get wrong that needs no model."""
    from cmsd_cli.calibrate.report import PlotUnavailableError, require_matplotlib
    from cmsd_cli.cli.generate import TaskSpec
    from cmsd_cli.cli.generate_cmd import check_languages, check_preset_task

    models.check()
    check_preset_task(models, TaskSpec(request.task))
    if request.task == "translate":
        if request.tgt is None:
            raise UserInputError("Translation needs --tgt, the target language code, for example --tgt de.")
        check_languages(TaskSpec("translate", src=request.src or "en", tgt=request.tgt))
    elif request.src is not None or request.tgt is not None:
        raise UserInputError("--src and --tgt apply to --task translate only, so remove them.")

    for path, option in ((request.out, "--out"), (request.plot, "--plot")):
        if path is None:
            continue
        if path.is_dir():
            raise UserInputError(f"{option} '{path}' is a directory, so give a file name.")
        if not path.parent.is_dir():
            raise UserInputError(f"The folder of {option} '{path}' does not exist, so create it or choose another path.")
    if request.plot is not None:
        try:
            require_matplotlib()
        except PlotUnavailableError as error:
            raise UserInputError(str(error)) from error


def read_source(request: CalibrateRequest) -> list[str]:
    """Return the first --limit non-empty lines of --source."""
    from cmsd_cli.cli.io import open_inputs

    lines = [line.text for line in open_inputs([str(request.source)]) if line.text.strip()]
    if request.limit is not None:
        lines = lines[: request.limit]
    if len(lines) < 2:
        raise UserInputError(
            f"Input file '{request.source}' has {len(lines)} non-empty lines but calibration needs at least 2 "
            "(the last ones are held out), so give a longer file."
        )
    return lines


def run_calibration(console, request: CalibrateRequest, texts: list[str], pair) -> None:
    """Decode, fit, search, print the report and write the profile (and plot)."""
    from cmsd_cli.calibrate import CalibrationError, CalibrationSettings, build_profile, calibrate, write_profile
    from cmsd_cli.calibrate.report import print_report, write_plot
    from cmsd_cli.cli.generate import TaskSpec, build_line_prompt
    from cmsd_cli.ui.progress import make_progress

    if pair.draft is None:
        raise UserInputError(
            f"Calibration needs a draft model, but {pair.target_name} was loaded without one; "
            "pass --draft or a preset with a draft."
        )
    max_new_tokens = request.max_new_tokens or TASK_MAX_NEW_TOKENS[request.task]
    settings = CalibrationSettings(
        max_new_tokens=max_new_tokens,
        draft_length=request.draft_length,
        holdout=request.holdout,
        repeats=request.repeats,
        estimator=request.estimator,
    )
    spec = TaskSpec(request.task, src=(request.src or "en") if request.task == "translate" else None, tgt=request.tgt)
    prompts = [build_line_prompt(pair, text, spec, max_new_tokens) for text in texts]
    truncated = [index + 1 for index, prompt in enumerate(prompts) if prompt.truncated]
    if truncated:
        logger.warning(
            "%d of %d inputs (non-empty lines %s) do not fit in the context of %s with room for %d new tokens, "
            "so only their beginning was used.",
            len(truncated), len(prompts), ", ".join(map(str, truncated)), pair.target_name, max_new_tokens,
        )

    with make_progress(console, unit="lines") as progress:
        bar = progress.add_task("recording", total=len(prompts))
        try:
            result = calibrate(
                pair,
                prompts,
                settings,
                on_line=lambda index: progress.advance(bar),
                on_stage=lambda stage: progress.update(bar, description=stage),
            )
        except CalibrationError as error:
            raise UserInputError(str(error)) from error

    stdout = Console(file=sys.stdout, highlight=False)
    if not stdout.is_terminal:
        # A file or pipe has no width limit, so each table row stays on one line.
        stdout.width = 160
    print_report(result, pair, request.estimator, stdout)

    inputs = {"task": request.task, "src": spec.src, "tgt": spec.tgt, "source": str(request.source), "limit": request.limit}
    try:
        write_profile(build_profile(result, pair, settings, inputs), request.out)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise UserInputError(f"Profile '{request.out}' could not be written ({reason}), so choose another --out path.") from error
    console.print(f"Profile written to {request.out}; use it with --profile {request.out}.", markup=False, highlight=False)
    if request.plot is not None:
        write_plot(result, request.plot)
        console.print(f"Plot written to {request.plot}.", markup=False, highlight=False)
