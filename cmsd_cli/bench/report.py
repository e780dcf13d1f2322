"""Benchmark results as a terminal table, a JSON document and a CSV file.

The JSON document is `{"methods": [...], "config": {...}, "signature": "..."}`. `config` contains what
is needed to reproduce the figures: models, device, dtype, decoding settings, seed, package versions,
CPU and GPU names. `signature` is the signature of the headline metric. That is sacrebleu's BLEU
signature for translation, the ROUGE settings for summarization, and the consistency BLEU signature
when no references were given.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from cmsd_cli.bench.runner import BenchResult, MethodResult

SPEED_FIELDS = (
    "seconds",
    "new_tokens",
    "tokens_per_second",
    "speedup_vs_ar",
    "target_calls",
    "draft_steps",
    "mean_accepted",
    "acceptance_rate",
    "rollback_rate",
    "identical_to_ar",
    "consistency_bleu",
)
QUALITY_FIELDS = {"translate": ("bleu", "chrf"), "summarize": ("rouge1", "rouge2", "rougeL")}
_VERSIONED_PACKAGES = ("cmsd-cli", "torch", "transformers", "sacrebleu", "rouge-score")


def method_fields(task: str) -> tuple[str, ...]:
    """Scalar fields of one method row, in report order."""
    return ("name", *SPEED_FIELDS, *QUALITY_FIELDS[task], "lossless", "error")


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_name() -> str:
    """Return the CPU model name from /proc/cpuinfo where there is one, else what `platform` reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_name(device: torch.device | None) -> str | None:
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    if device is not None and device.type == "mps":
        return "Apple GPU (mps)"
    return None


def environment(pair=None) -> dict[str, Any]:
    """Return the package versions and machine names that a timing depends on."""
    device = getattr(pair, "device", None)
    versions = {name: _package_version(name) for name in _VERSIONED_PACKAGES}
    versions["cmsd"] = versions.pop("cmsd-cli")
    versions["python"] = platform.python_version()
    return {
        "versions": versions,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu_name(device),
        "platform": platform.platform(),
    }


def _method_dict(result: MethodResult, task: str) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(result, name) for name in method_fields(task)}
    row["description"] = result.description
    row["settings"] = result.settings
    row["inputs"] = [
        {
            "index": run.index,
            "seconds": run.seconds,
            "repeat_seconds": run.repeat_seconds,
            "new_tokens": len(run.tokens),
            "finish_reason": run.finish_reason,
            "target_calls": run.target_calls,
            "drafted": run.drafted,
            "accepted": run.accepted,
            "text": run.text,
        }
        for run in result.inputs
    ]
    return row


def headline_signature(bench: BenchResult) -> str | None:
    """Return the signature of the headline quality figure (see the module docstring)."""
    if bench.task == "translate" and "bleu" in bench.signatures:
        return bench.signatures["bleu"]
    if bench.task == "summarize" and "rouge" in bench.signatures:
        return bench.signatures["rouge"]
    return bench.signatures.get("consistency_bleu")


def build_report(bench: BenchResult, pair=None, extra_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the JSON document for one benchmark. `extra_config` adds command-level facts (files, languages)."""
    settings = bench.settings
    config: dict[str, Any] = {
        "task": bench.task,
        "inputs": bench.inputs,
        "repeat": settings.repeat,
        "warmup_inputs": 1,
        "models": {
            "target": getattr(pair, "target_name", None),
            "draft": getattr(pair, "draft_name", None),
            "family": getattr(pair, "family", None),
            "preset": getattr(pair, "preset", None),
        },
        "device": str(getattr(pair, "device", None)) if pair is not None else None,
        "dtype": str(getattr(pair, "dtype", None)).replace("torch.", "") if pair is not None else None,
        "max_new_tokens": settings.max_new_tokens,
        "draft_length": settings.draft_length,
        "policy_params": dict(settings.policy_params),
        "verify_params": dict(settings.verify_params),
        "hf_confidence_threshold": settings.hf_confidence_threshold,
        "hf_confidence_tokens": settings.hf_confidence_tokens,
        "eos_token_ids": bench.eos_ids,
        "seed": settings.seed,
        "target_language": bench.target_language,
        "signatures": dict(bench.signatures),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **environment(pair),
    }
    if extra_config:
        config.update(extra_config)
    return {
        "methods": [_method_dict(result, bench.task) for result in bench.methods],
        "config": config,
        "signature": headline_signature(bench),
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_csv(bench: BenchResult, path: Path) -> None:
    """Write one row per method with the scalar fields of the JSON rows."""
    fields = method_fields(bench.task)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for result in bench.methods:
            writer.writerow({name: "" if getattr(result, name) is None else getattr(result, name) for name in fields})


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _speedup(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _quality_cell(result: MethodResult, name: str) -> str:
    value = getattr(result, name)
    # ROUGE is an F-measure in [0, 1]; the table shows it x 100 like BLEU and chrF.
    if value is not None and name.startswith("rouge"):
        value *= 100
    return _number(value, 1)


def build_table(bench: BenchResult) -> Table:
    """Build the terminal table with one row per method, in the order the methods ran."""
    repeats = f"median of {bench.settings.repeat} runs" if bench.settings.repeat > 1 else "1 run"
    table = Table(
        title=f"cmsd bench: {bench.task}, {bench.inputs} inputs, {repeats} each, warm-up excluded",
        title_justify="left",
    )
    table.add_column("method", no_wrap=True)
    table.add_column("sec", justify="right")
    table.add_column("tok/s", justify="right")
    table.add_column("speedup", justify="right")
    table.add_column("calls", justify="right")
    table.add_column("acc/iter", justify="right")
    table.add_column("accept", justify="right")
    table.add_column("rollback", justify="right")
    table.add_column("same", justify="right")
    table.add_column("cons", justify="right")
    quality = QUALITY_FIELDS[bench.task]
    labels = {"bleu": "BLEU", "chrf": "chrF", "rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L"}
    for name in quality:
        table.add_column(labels[name], justify="right")

    for result in bench.methods:
        if result.error is not None:
            table.add_row(result.name, "error", *["-"] * (8 + len(quality)))
            continue
        quality_cells = [_quality_cell(result, name) for name in quality]
        table.add_row(
            result.name,
            _number(result.seconds, 2),
            _number(result.tokens_per_second, 1),
            _speedup(result.speedup_vs_ar),
            _count(result.target_calls),
            _number(result.mean_accepted, 2),
            _percent(result.acceptance_rate),
            _percent(result.rollback_rate),
            _percent(result.identical_to_ar),
            _number(result.consistency_bleu, 1),
            *quality_cells,
        )
    return table


def print_report(bench: BenchResult, console: Console | None = None) -> None:
    """Print the table, then each failed method's error and the metric signatures."""
    if console is None:
        console = Console(file=sys.stdout, highlight=False)
        if not console.is_terminal:
            # A file or pipe has no width limit, so the table keeps one line per method.
            console.width = 200
    console.print(build_table(bench))
    for result in bench.methods:
        if result.error is not None:
            console.print(f"{result.name}: {result.error}", markup=False)
    if bench.task == "summarize" and any(result.rouge1 is not None for result in bench.methods):
        console.print("ROUGE columns are F-measures x 100.", markup=False)
    for metric, signature in bench.signatures.items():
        console.print(f"{metric} signature: {signature}", markup=False)
