"""`cmsd bench`: compare decoding methods on the same model pair, prompts and machine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from cmsd_cli.app import app
from cmsd_cli.bench.data import BenchData, BenchDataError, load_dataset, load_files
from cmsd_cli.bench.methods import (
    DEFAULT_METHODS,
    KNOWN_METHODS,
    MethodSpec,
    UnknownMethodError,
    parse_method_list,
)
from cmsd_cli.cli.errors import UserInputError, fail
from cmsd_cli.cli.help_format import PlainFlagCommand
from cmsd_cli.cli.options import DecodingOptions, ModelOptions, decoding_options, model_options
from cmsd_cli.ui.console import attach_log_handler, detach_log_handler, library_progress_bars_disabled, stderr_console

logger = logging.getLogger(__name__)

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C


# translate and summarize take --policy and --verify, so bench keeps them as hidden options and
# rejects them with a message that points to --methods instead of click's "No such option".
RejectedRuleOption = Annotated[Optional[str], typer.Option(hidden=True, show_default=False)]


@dataclass(frozen=True)
class BenchRequest:
    """The command's own options, apart from the shared model and decoding options."""

    task: str
    source: Optional[Path]
    reference: Optional[Path]
    dataset: Optional[str]
    src: Optional[str]
    tgt: Optional[str]
    limit: Optional[int]
    methods: str
    repeat: int
    json_path: Optional[Path]
    csv_path: Optional[Path]
    plot_path: Optional[Path]


@dataclass(frozen=True)
class BenchInputs:
    """Measured source lines with their references (or None), the warm-up line and the language pair."""

    sources: list[str]
    references: Optional[list[str]]
    warmup: str
    src: Optional[str]
    tgt: Optional[str]
    origin: str


@app.command(
    cls=PlainFlagCommand,
    help="Compare decoding methods on the same model pair and inputs: speed, agreement with target-only "
    "greedy decoding ('ar') and, with references, BLEU and chrF (translate) or ROUGE (summarize). "
    "The table goes to stdout, progress to stderr. Each method sets its own draft-length policy and "
    "verification rule, so --methods chooses them. The decoding options apply to every method that "
    "takes them.",
)
@model_options
@decoding_options(max_new_tokens=128, omit=("policy", "verify"))
def bench(
    task: Annotated[
        Literal["translate", "summarize"],
        typer.Option("--task", help="Task to benchmark.", show_default=False),
    ],
    source: Annotated[
        Optional[Path], typer.Option("--source", help="Input file, one sentence or document per line.")
    ] = None,
    reference: Annotated[
        Optional[Path],
        typer.Option("--reference", help="Reference outputs, one per source line; adds BLEU and chrF or ROUGE."),
    ] = None,
    dataset: Annotated[
        Optional[str],
        typer.Option(
            "--dataset",
            help="A sacrebleu test set instead of files, as TESTSET:SRC-TGT (for example wmt14:en-de). "
            "The first use downloads it; sacrebleu keeps a copy in ~/.sacrebleu.",
        ),
    ] = None,
    src: Annotated[
        Optional[str], typer.Option("--src", help="Source language code for translate, such as 'en'.")
    ] = None,
    tgt: Annotated[
        Optional[str], typer.Option("--tgt", help="Target language code for translate, such as 'de'.")
    ] = None,
    limit: Annotated[
        Optional[int],
        typer.Option("--limit", help="Measure only the first N non-empty input lines. Default: all lines.", min=1),
    ] = None,
    methods: Annotated[
        str,
        typer.Option("--methods", help=f"Comma-separated methods to compare, from: {', '.join(KNOWN_METHODS)}."),
    ] = ",".join(DEFAULT_METHODS),
    repeat: Annotated[
        int,
        typer.Option("--repeat", help="Time every method on every input this many times and report the median.", min=1),
    ] = 1,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Also write every figure, per input too, as JSON to this file.")
    ] = None,
    csv_path: Annotated[
        Optional[Path], typer.Option("--csv", help="Also write one CSV row per method to this file.")
    ] = None,
    plot_path: Annotated[
        Optional[Path],
        typer.Option(
            "--plot", help="Also write a PNG with the speedup per method and cmsd's draft length per iteration."
        ),
    ] = None,
    policy: RejectedRuleOption = None,
    verify: RejectedRuleOption = None,
    models: ModelOptions = ModelOptions(),
    decoding: DecodingOptions = DecodingOptions(),
) -> None:
    request = BenchRequest(
        task, source, reference, dataset, src, tgt, limit, methods, repeat, json_path, csv_path, plot_path
    )
    console = stderr_console()
    handler = attach_log_handler(console)
    try:
        reject_rule_options(policy=policy, verify=verify)
        specs = check_request(request, models, decoding)
        inputs = read_inputs(request)
        with (
            library_progress_bars_disabled(),
            console.status("Loading models (a first use downloads or converts them)…"),
        ):
            pair = models.load_pair()
        run_and_report(console, request, specs, inputs, pair, decoding)
    except UserInputError as error:
        fail(str(error))
    except KeyboardInterrupt:
        console.print("Interrupted: no results written.", markup=False, highlight=False)
        raise typer.Exit(INTERRUPTED_EXIT_CODE)
    finally:
        detach_log_handler(handler)


def reject_rule_options(*, policy: Optional[str], verify: Optional[str]) -> None:
    """Reject --policy and --verify, which the other decoding commands take but bench does not."""
    for option, value in (("--policy", policy), ("--verify", verify)):
        if value is not None:
            raise UserInputError(
                f"cmsd bench takes no {option} because each method sets its own policy and verification rule, "
                "so choose methods with --methods instead (for example --methods ar,static,cmsd)."
            )


def check_request(request: BenchRequest, models: ModelOptions, decoding: DecodingOptions) -> list[MethodSpec]:
    """Check everything a user can get wrong that needs no model, and return the methods to run."""
    from cmsd_cli.bench.plot import PlotUnavailableError, require_matplotlib
    from cmsd_cli.cli.generate import TaskSpec
    from cmsd_cli.cli.generate_cmd import check_preset_task

    try:
        specs = parse_method_list(request.methods)
    except UnknownMethodError as error:
        raise UserInputError(str(error)) from error
    check_parameters(decoding, specs)
    if decoding.temperature != 1.0 or decoding.top_k is not None or decoding.top_p is not None:
        logger.warning("--temperature, --top-k and --top-p are ignored: every benchmark method decodes greedily.")
    decoding.check()
    models.check()
    check_preset_task(models, TaskSpec(request.task))

    if request.dataset is not None and (request.source is not None or request.reference is not None):
        raise UserInputError("Give either --dataset or --source (with --reference), not both.")
    if request.dataset is None and request.source is None:
        raise UserInputError(
            "No input given; pass --source FILE (and --reference FILE for quality scores), or --dataset."
        )
    for path, option in ((request.json_path, "--json"), (request.csv_path, "--csv"), (request.plot_path, "--plot")):
        if path is not None and not path.parent.is_dir():
            raise UserInputError(f"The folder of {option} '{path}' does not exist; create it or choose another path.")
    if request.plot_path is not None:
        try:
            require_matplotlib()
        except PlotUnavailableError as error:
            raise UserInputError(str(error)) from error
    return specs


def check_parameters(decoding: DecodingOptions, specs: list[MethodSpec]) -> None:
    """Reject a policy or verification option that none of the chosen methods takes."""
    from cmsd_cli.policies import parameter_names

    engine_specs = [spec for spec in specs if spec.policy is not None]
    for kind, params in (("policy", decoding.policy_params()), ("verify", decoding.verify_params())):
        names = {spec.policy if kind == "policy" else spec.verify for spec in engine_specs}
        for param in params:
            if not any(param in parameter_names(kind, name) for name in names):
                option = "--" + param.replace("_", "-")
                raise UserInputError(
                    f"{option} has no effect on the methods {', '.join(spec.name for spec in specs)}, "
                    "so remove it or add a method that uses it to --methods."
                )


def read_inputs(request: BenchRequest) -> BenchInputs:
    """Read the source and reference lines, settle the language pair, and pick the warm-up line.

    Empty source lines are dropped with their references. The warm-up is the first non-empty line
    after the measured ones, so it is not also a measured input. When the file has no such line,
    the first line warms up.
    """
    from cmsd_cli.cli.generate import TaskSpec
    from cmsd_cli.cli.generate_cmd import check_languages

    try:
        data: BenchData = (
            load_dataset(request.dataset) if request.dataset else load_files(request.source, request.reference)
        )
    except BenchDataError as error:
        raise UserInputError(str(error)) from error

    src, tgt = request.src, request.tgt
    if request.task == "translate":
        if data.src is not None and ((src and src != data.src) or (tgt and tgt != data.tgt)):
            raise UserInputError(
                f"--src/--tgt ({src}-{tgt}) differ from the --dataset language pair {data.src}-{data.tgt}; drop them."
            )
        src = src or data.src or "en"
        tgt = tgt or data.tgt
        if tgt is None:
            raise UserInputError("Translation needs --tgt, the target language code, for example --tgt de.")
        check_languages(TaskSpec("translate", src=src, tgt=tgt))
    else:
        src = tgt = None

    non_empty = [index for index, text in enumerate(data.sources) if text.strip()]
    if not non_empty:
        raise UserInputError(f"The input {data.origin} has no non-empty lines; give a file with one input per line.")
    if len(non_empty) < len(data.sources):
        logger.warning("Skipped %d empty lines of %s.", len(data.sources) - len(non_empty), data.origin)
    measured = non_empty[: request.limit] if request.limit is not None else non_empty
    warmup_index = non_empty[len(measured)] if len(non_empty) > len(measured) else non_empty[0]

    return BenchInputs(
        sources=[data.sources[index] for index in measured],
        references=[data.references[index] for index in measured] if data.references is not None else None,
        warmup=data.sources[warmup_index],
        src=src,
        tgt=tgt,
        origin=data.origin,
    )


def run_and_report(
    console, request: BenchRequest, specs: list[MethodSpec], inputs: BenchInputs, pair, decoding: DecodingOptions
) -> None:
    """Build the prompts, run the benchmark with a progress bar on stderr, and write every requested output."""
    from cmsd_cli.bench.plot import write_plot
    from cmsd_cli.bench.report import build_report, print_report, write_csv, write_json
    from cmsd_cli.bench.runner import BenchSettings, run_benchmark
    from cmsd_cli.cli.generate import TaskSpec, build_line_prompt
    from cmsd_cli.ui.progress import make_progress

    task_spec = TaskSpec(request.task, src=inputs.src, tgt=inputs.tgt)
    if pair.draft is None and any(spec.uses_draft for spec in specs):
        needs = ", ".join(spec.name for spec in specs if spec.uses_draft)
        raise UserInputError(
            f"The methods {needs} need a draft model, but {pair.target_name} was loaded without one; "
            "pass --draft or a preset with a draft, or use --methods ar."
        )

    engine_kwargs = decoding.engine_kwargs(pair)
    settings = BenchSettings(
        max_new_tokens=decoding.max_new_tokens,
        draft_length=engine_kwargs.get("draft_length", BenchSettings.draft_length),
        policy_params=engine_kwargs["policy_params"] or {},
        verify_params=engine_kwargs["verify_params"] or {},
        seed=decoding.seed,
        repeat=request.repeat,
    )
    prompts = [build_line_prompt(pair, text, task_spec, settings.max_new_tokens) for text in inputs.sources]
    warmup = build_line_prompt(pair, inputs.warmup, task_spec, settings.max_new_tokens)

    with make_progress(console, unit="runs", transient=True) as progress:
        bar = progress.add_task("warm-up", total=len(specs) * (1 + len(prompts) * request.repeat))

        def advance(method: str, index: Optional[int], repeat_index: int) -> None:
            where = "warm-up" if index is None else f"input {index + 1}/{len(prompts)}"
            progress.update(bar, description=f"{method}, {where}")
            progress.advance(bar)

        try:
            result = run_benchmark(
                pair,
                prompts,
                specs,
                settings=settings,
                task=request.task,
                references=inputs.references,
                target_language=inputs.tgt,
                warmup=warmup,
                on_run=advance,
            )
        except ValueError as error:
            raise UserInputError(str(error)) from error

    print_report(result)
    profile_path = decoding.profile_in_effect(pair)
    if request.json_path is not None:
        extra = {
            "src": inputs.src,
            "tgt": inputs.tgt,
            "source": inputs.origin,
            "limit": request.limit,
            "profile": str(profile_path) if profile_path is not None else None,
        }
        write_json(build_report(result, pair, extra), request.json_path)
    if request.csv_path is not None:
        write_csv(result, request.csv_path)
    if request.plot_path is not None:
        write_plot(result, request.plot_path)
