"""One stop rule for every method's output, so token ids and texts compare like for like.

`generate()` may return tokens past a stop string, because assisted generation checks its stopping
criteria only after a whole verified block is appended. Cutting every method's tokens the same way
afterwards makes "identical to ar" mean the same thing for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CutOutput:
    """New tokens up to the first end-of-sequence token or stop string, and their text."""

    tokens: list[int]
    text: str | None
    finish_reason: str  # "eos", "stop_string" or "length"


def _first_stop(text: str, stop_strings: Sequence[str]) -> int | None:
    positions = [text.find(stop) for stop in stop_strings if stop and stop in text]
    return min(positions) if positions else None


def cut_output(
    tokens: Sequence[int], *, eos_ids: Sequence[int], tokenizer=None, stop_strings: Sequence[str] = ()
) -> CutOutput:
    """Cut `tokens` after the first EOS token, then at the first stop string.

    Tokens are kept up to and including the one that completes the stop string, and the text ends
    just before the stop string. Without a tokenizer stop strings cannot be seen and the text is None.
    Cutting an already cut output changes nothing.
    """
    kept = list(tokens)
    finish_reason = "length"
    eos = set(eos_ids)
    for index, token in enumerate(kept):
        if token in eos:
            kept = kept[: index + 1]
            finish_reason = "eos"
            break

    if tokenizer is None:
        return CutOutput(kept, None, finish_reason)

    text = tokenizer.decode(kept, skip_special_tokens=True)
    position = _first_stop(text, stop_strings) if stop_strings else None
    if position is None:
        return CutOutput(kept, text, finish_reason)

    # The shortest prefix whose text contains a stop string ends with the token that completes it.
    for length in range(1, len(kept)):
        prefix_text = tokenizer.decode(kept[:length], skip_special_tokens=True)
        prefix_position = _first_stop(prefix_text, stop_strings)
        if prefix_position is not None:
            return CutOutput(kept[:length], prefix_text[:prefix_position], "stop_string")
    return CutOutput(kept, text[:position], "stop_string")
