"""`cmsd translate` and `cmsd summarize`: one input per line in, one result per line out."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cmsd_cli.app import app
from cmsd_cli.cli.errors import UserInputError, fail
from cmsd_cli.cli.generate import TaskSpec, build_line_prompt, run_lines
from cmsd_cli.cli.help_format import PlainFlagCommand
from cmsd_cli.cli.io import LineWriter, check_output_path, open_inputs, silence_stdout
from cmsd_cli.cli.options import DecodingOptions, ModelOptions, decoding_options, model_options
from cmsd_cli.ui.console import (
    attach_log_handler,
    detach_log_handler,
    library_progress_bars_disabled,
    stderr_console,
)
from cmsd_cli.ui.live import LiveView
from cmsd_cli.ui.summary import summary_table

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C
# A reader that stops early (`| head -3`) is not an error of this command, so a closed stdout exits
# with 0; that keeps `set -o pipefail` scripts working, where 141 (128 + SIGPIPE) would fail them.
BROKEN_PIPE_EXIT_CODE = 0

FilesArgument = Annotated[
    Optional[list[str]],
    typer.Argument(
        metavar="FILE",
        help="Input files with one input per line. No file, or '-', reads standard input.",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Optional[Path],
    typer.Option(
        "-o",
        "--output",
        help="Write results to this file instead of stdout. Each line is written whole and flushed when "
        "it is done, so after Ctrl-C the file holds every finished line and no partial one.",
    ),
]
JsonlOption = Annotated[
    bool,
    typer.Option(
        "--jsonl",
        help="Write one JSON object per line: index, source, line, input, output, finish_reason, new_tokens, "
        "target_calls, drafted, accepted, acceptance_rate, mean_accepted, seconds, tokens_per_second, "
        "truncated. A rate is null "
        "where it is undefined, such as acceptance_rate when nothing was drafted.",
    ),
]
LiveOption = Annotated[
    Optional[bool],
    typer.Option(
        "--live/--no-live",
        help="Show the live view of each draft-and-verify iteration on stderr. Default: on when stderr is a "
        "terminal, unless the input is typed at the terminal.",
        show_default=False,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors on stderr, no warnings.")]

LONG_INPUT_HELP = (
    "An input too long for the target's context (with room for --max-new-tokens) is cut: its beginning "
    "is kept, its end dropped, and a warning names the line."
)


@app.command(
    cls=PlainFlagCommand,
    help="Translate text, one sentence per input line, with speculative decoding. "
    "Empty lines give empty output lines. " + LONG_INPUT_HELP,
)
@model_options
@decoding_options(max_new_tokens=128)
def translate(
    src: Annotated[str, typer.Option("--src", help="Source language code, for example 'en'.", show_default=False)],
    tgt: Annotated[str, typer.Option("--tgt", help="Target language code, for example 'de'.", show_default=False)],
    files: FilesArgument = None,
    output: OutputOption = None,
    jsonl: JsonlOption = False,
    live: LiveOption = None,
    quiet: QuietOption = False,
    models: ModelOptions = ModelOptions(),
    decoding: DecodingOptions = DecodingOptions(),
) -> None:
    run_command(TaskSpec("translate", src=src, tgt=tgt), files, output, jsonl, live, quiet, models, decoding)


@app.command(
    cls=PlainFlagCommand,
    help="Summarize documents, one document per input line, with speculative decoding. "
    "Empty lines give empty output lines. " + LONG_INPUT_HELP,
)
@model_options
@decoding_options(max_new_tokens=160)
def summarize(
    files: FilesArgument = None,
    output: OutputOption = None,
    jsonl: JsonlOption = False,
    live: LiveOption = None,
    quiet: QuietOption = False,
    models: ModelOptions = ModelOptions(),
    decoding: DecodingOptions = DecodingOptions(),
) -> None:
    run_command(TaskSpec("summarize"), files, output, jsonl, live, quiet, models, decoding)


def check_languages(spec: TaskSpec) -> None:
    """Reject an unknown language code before any model loads."""
    from cmsd_cli.tasks import UnknownLanguageError, language_name

    for code in (spec.src, spec.tgt):
        if code is None:
            continue
        try:
            language_name(code)
        except UnknownLanguageError as error:
            raise UserInputError(str(error)) from error

    if spec.src is not None and spec.tgt is not None and spec.src.lower() == spec.tgt.lower():
        raise UserInputError(f"--src and --tgt are both {spec.src!r}, so give two different languages.")


def check_preset_task(models: ModelOptions, spec: TaskSpec) -> None:
    """Reject a preset made for another task, such as translation with a summarization preset."""
    if models.preset is None or models.target is not None:
        return
    from cmsd_cli.models import PRESETS

    preset = PRESETS[models.preset]
    if spec.task not in preset.tasks:
        raise UserInputError(
            f"Preset '{preset.name}' cannot {spec.task}, so choose another preset ('cmsd models' lists them)."
        )


def check_policy_parameters(decoding: DecodingOptions) -> None:
    """Reject a policy or verification option that the chosen rule does not take, or a value it rejects."""
    from cmsd_cli.policies import POLICIES, VERIFIERS, make_policy, make_verifier, parameter_names

    if decoding.policy not in POLICIES:
        raise UserInputError(f"Unknown --policy {decoding.policy!r}, so choose one of: {', '.join(POLICIES)}.")
    if decoding.verify not in VERIFIERS:
        raise UserInputError(f"Unknown --verify {decoding.verify!r}, so choose one of: {', '.join(VERIFIERS)}.")

    checks = (
        ("policy", decoding.policy, "--policy", decoding.policy_params()),
        ("verify", decoding.verify, "--verify", decoding.verify_params()),
    )
    for kind, name, flag, params in checks:
        accepted = parameter_names(kind, name)
        for param in params:
            if param not in accepted:
                option = "--" + param.replace("_", "-")
                raise UserInputError(f"{option} has no effect with {flag} {name}, so remove it or choose another {flag}.")

    try:
        make_policy(decoding.policy, decoding.policy_params())
        make_verifier(decoding.verify, decoding.verify_params())
    except ValueError as error:
        raise UserInputError(f"Invalid decoding options: {error}.") from error


def _is_terminal(stream) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def _stdout_is_stderr_terminal() -> bool:
    """Tell whether stdout and stderr are the same terminal, where the live view redraws."""
    try:
        stdout, stderr = sys.stdout.fileno(), sys.stderr.fileno()
        return os.isatty(stdout) and os.path.samestat(os.fstat(stdout), os.fstat(stderr))
    except (AttributeError, OSError, ValueError):
        return False


def _description(spec: TaskSpec) -> str:
    if spec.task == "translate":
        return f"Translating {spec.src}→{spec.tgt}"
    return "Summarizing"


def check_and_open_inputs(
    spec: TaskSpec, files: Optional[list[str]], output: Optional[Path], models: ModelOptions, decoding: DecodingOptions
):
    """Check everything a user can get wrong, then read the input files; nothing here loads a model."""
    check_languages(spec)
    check_policy_parameters(decoding)
    decoding.check()
    models.check()
    check_preset_task(models, spec)
    if output is not None:
        check_output_path(output)
    return open_inputs(list(files or []))


def load_pair_with_status(models: ModelOptions, console, show_status: bool):
    with library_progress_bars_disabled():
        if not show_status:
            return models.load_pair()
        with console.status("Loading models (a first use downloads or converts them)…"):
            return models.load_pair()


def run_with_live_view(spec: TaskSpec, pair, inputs, engine_kwargs: dict, writer: LineWriter, jsonl: bool, console):
    view = LiveView(
        console,
        token_text=lambda token: pair.tokenizer.decode([token]),
        decode=lambda tokens: pair.tokenizer.decode(tokens, skip_special_tokens=True),
        total=inputs.total,
        description=_description(spec),
    )
    if writer.path is None and _stdout_is_stderr_terminal():
        # Raw writes to the terminal the view redraws would break its layout, so results are
        # printed above the view instead.
        writer.sink = view.print_above
    with view:
        run_lines(pair, inputs, spec, engine_kwargs, writer, jsonl=jsonl, view=view)
    console.print(summary_table(view.totals, title=f"{_description(spec)}: summary"))


def run_command(
    spec: TaskSpec,
    files: Optional[list[str]],
    output: Optional[Path],
    jsonl: bool,
    live: Optional[bool],
    quiet: bool,
    models: ModelOptions,
    decoding: DecodingOptions,
) -> None:
    """Check the inputs, load the models, and run the task over every line, turning user errors into exit code 2."""
    console = stderr_console(force_terminal=True if live else None)
    handler = attach_log_handler(console, quiet=quiet)
    # The writer opens an output file only at the first line, so creating it here changes nothing on disk.
    writer = LineWriter(output)
    total: Optional[int] = None
    try:
        # Everything a user can get wrong is checked before the models load, which takes seconds to minutes.
        inputs = check_and_open_inputs(spec, files, output, models, decoding)
        total = inputs.total

        # Typed input would be echoed into the live view, so it stays off for interactive use unless forced.
        interactive = total is None and _is_terminal(sys.stdin)
        show_live = live if live is not None else (console.is_terminal and not interactive)
        if interactive and console.is_terminal:
            console.print("Reading standard input, one input per line; end it with Ctrl-D.", style="dim")

        pair = load_pair_with_status(models, console, show_status=show_live)
        engine_kwargs = decoding.engine_kwargs(pair)
        # A task the model cannot do, or a prompt template longer than the context, fails here once
        # instead of at the first non-empty line.
        build_line_prompt(pair, "Test.", spec, decoding.max_new_tokens)

        if show_live:
            run_with_live_view(spec, pair, inputs, engine_kwargs, writer, jsonl, console)
        else:
            run_lines(pair, inputs, spec, engine_kwargs, writer, jsonl=jsonl)
    except UserInputError as error:
        fail(str(error))
    except KeyboardInterrupt:
        of_total = f" of {total}" if total is not None else ""
        where = f" in {output}" if output is not None else ""
        console.print(
            f"Interrupted: {writer.lines_written}{of_total} lines finished{where}.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED_EXIT_CODE)
    except BrokenPipeError:
        silence_stdout()
        raise typer.Exit(BROKEN_PIPE_EXIT_CODE)
    finally:
        writer.close()
        detach_log_handler(handler)
