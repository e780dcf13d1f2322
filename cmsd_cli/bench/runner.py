"""Run decoding methods side by side on one model pair and the same prompts, with fair timing.

Fairness rules, all enforced here:

- every method decodes the same prompts with the same token budget, EOS ids and stop strings, and
  every output is cut by the same rule (`cut_output`) before it is compared or scored;
- one warm-up input runs every method once first and is left out of every figure;
- methods are interleaved per input (all methods on input 1, then all on input 2, ...), so drift
  of the machine (clock boost, heat, other load) hits all methods alike;
- each input is timed `repeat` times per method and the median is kept;
- on CUDA the clock is read only after `torch.cuda.synchronize()`.

The runner does not depend on the command line, so `cmsd calibrate` can reuse it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from cmsd_cli.bench.executors import make_method, resolve_eos_ids
from cmsd_cli.bench.methods import HF, MethodSpec, resolve_methods
from cmsd_cli.bench.outputs import cut_output
from cmsd_cli.bench.results import TASKS, BenchResult, BenchSettings, InputRun, MethodResult, PromptLike
from cmsd_cli.bench.scoring import fill_figures
from cmsd_cli.metrics import median_seconds

logger = logging.getLogger(__name__)

__all__ = ["BenchResult", "BenchSettings", "InputRun", "MethodResult", "PromptLike", "run_benchmark"]


class _Timer:
    """Reads a clock, after synchronising CUDA so that queued kernels are counted."""

    def __init__(self, clock: Callable[[], float], devices: Sequence[torch.device]) -> None:
        self.clock = clock
        self.cuda = any(device.type == "cuda" for device in devices)

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return self.clock()


def _model_device(model: torch.nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def run_benchmark(
    pair,
    prompts: Sequence[PromptLike],
    methods: Sequence[str | MethodSpec],
    *,
    settings: BenchSettings | None = None,
    task: str = "translate",
    references: Sequence[str] | None = None,
    target_language: str | None = None,
    warmup: PromptLike | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_run: Callable[[str, int | None, int], None] | None = None,
) -> BenchResult:
    """Decode every prompt with every method and return one scored row per method.

    `pair` is a ModelPair (target, draft, tokenizer). `warmup` defaults to the first prompt. It runs
    once per method before the measured inputs and counts in no figure. `references` (one per
    prompt) add BLEU and chrF for "translate" or ROUGE for "summarize", and `target_language`
    picks sacrebleu's tokenizer. `on_run(method, input_index, repeat_index)` is called before each
    decoding call, with `input_index=None` for the warm-up. `clock` returns seconds (tests inject
    a fake one).

    A transformers method that fails (for example because the draft cannot serve as an assistant
    model) gets an `error` in its row and the run goes on. Errors of cmsd's own methods propagate.
    """
    settings = settings or BenchSettings()
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if not prompts:
        raise ValueError("the benchmark needs at least one prompt")
    if references is not None and len(references) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(references)} references; give one reference per prompt")

    specs = resolve_methods(method.name if isinstance(method, MethodSpec) else method for method in methods)
    needs_draft = [spec.name for spec in specs if spec.uses_draft]
    if needs_draft and pair.draft is None:
        raise ValueError(
            f"methods {', '.join(needs_draft)} need a draft model, but the model pair has none; "
            "load a pair with a draft or benchmark only 'ar'"
        )

    eos_token_id = settings.eos_token_id if settings.eos_token_id is not None else getattr(pair, "eos_token_id", None)
    eos_ids = resolve_eos_ids(pair.target, pair.tokenizer, eos_token_id)
    runners = {spec.name: make_method(spec, pair, settings, eos_ids) for spec in specs}
    results = {
        spec.name: MethodResult(
            name=spec.name, description=spec.description, lossless=spec.lossless, settings=runners[spec.name].describe()
        )
        for spec in specs
    }
    devices = [_model_device(pair.target)] + ([_model_device(pair.draft)] if pair.draft is not None else [])
    timer = _Timer(clock, devices)

    def decode_once(spec: MethodSpec, prompt: PromptLike) -> tuple[float, dict[str, Any]]:
        start = timer.now()
        counters = runners[spec.name].run(prompt)
        return timer.now() - start, counters

    def run_guarded(spec: MethodSpec, prompt: PromptLike) -> tuple[float, dict[str, Any]] | None:
        result = results[spec.name]
        if result.error is not None:
            return None
        if spec.kind != HF:
            return decode_once(spec, prompt)
        try:
            return decode_once(spec, prompt)
        except Exception as error:  # transformers raises many types for a draft it cannot use
            result.error = f"transformers generate() failed with this draft: {type(error).__name__}: {error}"
            logger.warning("Method %s failed and is left out of the figures: %s", spec.name, result.error)
            return None

    # Warm-up: caches, allocator and kernel selection settle before anything is timed.
    warmup_prompt = warmup if warmup is not None else prompts[0]
    for spec in specs:
        if on_run is not None:
            on_run(spec.name, None, 0)
        run_guarded(spec, warmup_prompt)

    for index, prompt in enumerate(prompts):
        timings: dict[str, list[float]] = {spec.name: [] for spec in specs}
        first: dict[str, dict[str, Any]] = {}
        for repeat_index in range(settings.repeat):
            for spec in specs:
                if on_run is not None:
                    on_run(spec.name, index, repeat_index)
                outcome = run_guarded(spec, prompt)
                if outcome is None:
                    continue
                seconds, counters = outcome
                timings[spec.name].append(seconds)
                first.setdefault(spec.name, counters)

        for spec in specs:
            if results[spec.name].error is not None or spec.name not in first:
                continue
            counters = first[spec.name]
            cut = cut_output(
                counters["tokens"], eos_ids=eos_ids, tokenizer=pair.tokenizer, stop_strings=prompt.stop_strings
            )
            results[spec.name].inputs.append(
                InputRun(
                    index=index,
                    seconds=median_seconds(timings[spec.name]),
                    repeat_seconds=timings[spec.name],
                    tokens=cut.tokens,
                    text=cut.text,
                    finish_reason=cut.finish_reason,
                    target_calls=counters["target_calls"],
                    draft_steps=counters["draft_steps"],
                    drafted=counters["drafted"],
                    accepted=counters["accepted"],
                    iterations=counters["iterations"],
                    rollbacks=counters["rollbacks"],
                    trace=counters["trace"],
                )
            )

    for spec in specs:
        results[spec.name].settings = runners[spec.name].describe()

    bench = BenchResult(
        task=task,
        methods=[results[spec.name] for spec in specs],
        settings=settings,
        eos_ids=eos_ids,
        inputs=len(prompts),
        target_language=target_language,
    )
    fill_figures(bench, references)
    return bench
