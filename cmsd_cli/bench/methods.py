"""The decoding methods `cmsd bench` compares, by name.

Every method decodes the same prompts with the same model pair, token budget and stop rules.
"ar" is the baseline that speedups and consistency are measured against.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ENGINE = "engine"  # cmsd's own loop, `speculative_generate`
HF = "hf"  # Hugging Face `generate(assistant_model=...)`


@dataclass(frozen=True)
class MethodSpec:
    """Decoding settings of one benchmark method.

    For `ENGINE` methods `policy` and `verify` are the `speculative_generate` arguments, and
    `policy=None` means target-only decoding (no draft). For `HF` methods `schedule` is the
    assistant's `num_assistant_tokens_schedule` and `confidence_stop` turns on
    `assistant_confidence_threshold`.
    """

    name: str
    kind: str
    description: str
    lossless: bool
    policy: str | None = None
    verify: str = "greedy"
    schedule: str | None = None
    confidence_stop: bool = False

    @property
    def uses_draft(self) -> bool:
        return self.kind == HF or self.policy is not None


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("ar", ENGINE, "target-only greedy decoding (the baseline)", lossless=True),
        MethodSpec(
            "hf-static", HF, "transformers assisted generation, fixed draft length", lossless=True, schedule="constant"
        ),
        MethodSpec(
            "hf-heuristic",
            HF,
            "transformers assisted generation, draft length +2 after a fully accepted round, -1 otherwise",
            lossless=True,
            schedule="heuristic",
        ),
        MethodSpec(
            "hf-confidence",
            HF,
            "transformers assisted generation, drafting stops below a draft-probability threshold",
            lossless=True,
            schedule="constant",
            confidence_stop=True,
        ),
        MethodSpec("static", ENGINE, "fixed draft length, greedy verification", lossless=True, policy="static"),
        MethodSpec(
            "heuristic", ENGINE, "+2/-1 draft-length schedule, greedy verification", lossless=True, policy="heuristic"
        ),
        MethodSpec(
            "threshold",
            ENGINE,
            "drafting stops when the top draft probability falls below p_min, greedy verification",
            lossless=True,
            policy="threshold",
        ),
        MethodSpec(
            "entropy-bound",
            ENGINE,
            "drafting stops when an entropy bound on acceptance falls below a threshold, greedy verification",
            lossless=True,
            policy="entropy-bound",
        ),
        MethodSpec("cmsd", ENGINE, "confidence-set draft length, greedy verification", lossless=True, policy="cmsd"),
        MethodSpec(
            "cmsd-tolerant",
            ENGINE,
            "confidence-set draft length, tolerant verification with fixed beta and tau",
            lossless=False,
            policy="cmsd",
            verify="tolerant",
        ),
        MethodSpec(
            "cmsd-relaxed",
            ENGINE,
            "confidence-set draft length, verification relaxed where the draft is confident",
            lossless=False,
            policy="cmsd",
            verify="cmsd",
        ),
    )
}

KNOWN_METHODS = tuple(METHODS)
DEFAULT_METHODS = ("ar", "hf-heuristic", "static", "cmsd", "cmsd-relaxed")
BASELINE = "ar"


class UnknownMethodError(ValueError):
    """A method name that `cmsd bench` does not know; the message lists the known ones."""


def resolve_methods(names: Iterable[str]) -> list[MethodSpec]:
    """Look up method names in order, dropping repeats.

    Raises UnknownMethodError naming every unknown name and listing the known ones.
    """
    requested: list[str] = []
    for name in names:
        name = name.strip()
        if name and name not in requested:
            requested.append(name)
    if not requested:
        raise UnknownMethodError(f"No benchmark method given; choose from: {', '.join(KNOWN_METHODS)}.")

    unknown = [name for name in requested if name not in METHODS]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        noun = "method" if len(unknown) == 1 else "methods"
        raise UnknownMethodError(f"Unknown benchmark {noun} {listed}; choose from: {', '.join(KNOWN_METHODS)}.")
    return [METHODS[name] for name in requested]


def parse_method_list(text: str) -> list[MethodSpec]:
    """Resolve a comma-separated method list such as "ar,static,cmsd"."""
    return resolve_methods(text.split(","))
