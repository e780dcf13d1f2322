"""One stop rule for every method's output, so token ids and texts compare like for like.

`generate()` may return tokens past a stop string, because assisted generation checks its stopping
criteria only after a whole verified block is appended. Cutting every method's tokens the same way
afterwards makes "identical to ar" mean the same thing for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cmsd_cli.engine.loop import cut_at_stop_string


@dataclass(frozen=True)
class CutOutput:
    """New tokens up to the first end-of-sequence token or stop string, and their text."""

    tokens: list[int]
    text: str | None
    finish_reason: str  # "eos", "stop_string" or "length"


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

    if not stop_strings:
        return CutOutput(kept, tokenizer.decode(kept, skip_special_tokens=True), finish_reason)

    # The same rule as the engine's, so every method's output is cut identically.
    cut_tokens, cut_text = cut_at_stop_string(kept, tokenizer, stop_strings)
    if cut_text is None:
        return CutOutput(kept, tokenizer.decode(kept, skip_special_tokens=True), finish_reason)
    return CutOutput(cut_tokens, cut_text, "stop_string")
