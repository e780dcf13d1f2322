"""One task over many input lines: build each prompt, decode it speculatively, and write one result line."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from cmsd_cli.cli.errors import UserInputError
from cmsd_cli.cli.io import InputLine, LineWriter, flatten

logger = logging.getLogger(__name__)

COUNT_FIELDS = ("new_tokens", "target_calls", "drafted", "accepted")


@dataclass(frozen=True)
class TaskSpec:
    """The parts of a run that differ between translate and summarize."""

    task: str
    src: Optional[str] = None
    tgt: Optional[str] = None


@dataclass
class LineResult:
    """The result for one input line, with the engine's counters (zero when no model call was made)."""

    line: InputLine
    output: str
    finish_reason: Optional[str]
    stats: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False

    @property
    def empty(self) -> bool:
        return not self.line.text.strip()

    def rates(self) -> dict[str, Optional[float]]:
        """Return acceptance_rate, mean_accepted, seconds and tokens_per_second for this line.

        A rate whose denominator is zero (nothing drafted, no iteration, no generation time) is None,
        so JSON output has null there instead of a 0.0 that reads like a measurement.
        """
        drafted = self.stats.get("drafted", 0)
        accepted = self.stats.get("accepted", 0)
        iterations = self.stats.get("iterations", 0)
        new_tokens = self.stats.get("new_tokens", 0)
        seconds = self.stats.get("seconds", 0.0)
        return {
            "acceptance_rate": accepted / drafted if drafted else None,
            "mean_accepted": accepted / iterations if iterations else None,
            "seconds": seconds,
            "tokens_per_second": new_tokens / seconds if seconds > 0 else None,
        }

    def to_json(self) -> str:
        """Serialise as one JSON object; `index` is the 0-based position of the line in the whole run."""
        record: dict[str, Any] = {
            "index": self.line.number - 1,
            "source": self.line.source,
            "line": self.line.source_line,
            "input": self.line.text,
            "output": self.output,
            "finish_reason": self.finish_reason,
        }
        for name in COUNT_FIELDS:
            record[name] = self.stats.get(name, 0)
        record.update(self.rates())
        record["truncated"] = self.truncated
        return json.dumps(record, ensure_ascii=False)


def prompt_limit(pair, max_new_tokens: int) -> int:
    """Return the most prompt tokens that leave room for `max_new_tokens` in the target's context.

    An encoder-decoder model reads the prompt with its encoder, so only the prompt counts there.
    """
    if pair.is_encoder_decoder:
        return pair.context_length
    return pair.context_length - max_new_tokens


def build_line_prompt(pair, text: str, spec: TaskSpec, max_new_tokens: int):
    """Build the prompt for one input, cutting the end of an input that does not fit the context.

    Raises UserInputError when the model cannot do the task, or when even an empty input would not
    fit (--max-new-tokens too large for the context).
    """
    from cmsd_cli.tasks import PromptTooLongError, UnsupportedTaskError, build_prompt, fit_prompt

    try:
        prompt = build_prompt(spec.task, pair, text, src=spec.src, tgt=spec.tgt)
        return fit_prompt(prompt, prompt_limit(pair, max_new_tokens), side="right")
    except (PromptTooLongError, UnsupportedTaskError) as error:
        raise UserInputError(str(error)) from error


def generate_line(
    pair,
    line: InputLine,
    spec: TaskSpec,
    engine_kwargs: dict[str, Any],
    *,
    on_iteration: Optional[Callable[[Any], None]] = None,
) -> LineResult:
    """Decode one input line; an empty line gives an empty output without a model call."""
    from cmsd_cli.engine import speculative_generate

    if not line.text.strip():
        return LineResult(line=line, output="", finish_reason=None)

    max_new_tokens = engine_kwargs["max_new_tokens"]
    prompt = build_line_prompt(pair, line.text, spec, max_new_tokens)
    if prompt.truncated:
        logger.warning(
            "Line %d of %s does not fit in the context of %s (%d tokens, with room for %d new tokens), "
            "so only its beginning was used.",
            line.source_line,
            line.source,
            pair.target_name,
            pair.context_length,
            max_new_tokens,
        )

    result = speculative_generate(
        pair.target,
        pair.draft,
        prompt.input_ids.to(pair.device),
        eos_token_id=pair.eos_token_id,
        vocab_size=pair.vocab_size,
        stop_strings=list(prompt.stop_strings) or None,
        tokenizer=pair.tokenizer,
        on_iteration=on_iteration,
        **engine_kwargs,
    )
    return LineResult(
        line=line,
        output=flatten(result.text or ""),
        finish_reason=result.finish_reason,
        stats=dict(result.stats),
        truncated=prompt.truncated,
    )


def run_lines(
    pair,
    lines: Iterable[InputLine],
    spec: TaskSpec,
    engine_kwargs: dict[str, Any],
    writer: LineWriter,
    *,
    jsonl: bool = False,
    view=None,
) -> None:
    """Decode every line in order and write each result as soon as it is done.

    `view` is an optional `LiveView`; `writer.lines_written` counts the finished lines, also when
    the run stops early.
    """
    for line in lines:
        if view is not None:
            view.start_line(line.number, line.text)

        result = generate_line(
            pair, line, spec, engine_kwargs, on_iteration=view.on_iteration if view is not None else None
        )
        writer.write_line(result.to_json() if jsonl else result.output)

        if view is not None:
            view.finish_line(result.stats or None, empty=result.empty, truncated=result.truncated)
