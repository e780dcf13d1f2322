"""Hugging Face assisted generation as a benchmark baseline: `target.generate(assistant_model=draft)`.

transformers (checked against 5.25) reads three assistant settings from the *draft's* generation
config. `num_assistant_tokens` is the number of draft tokens per round. `num_assistant_tokens_schedule`
is "constant", or "heuristic": +2 after a fully accepted round, -1 otherwise, and the value carries
over to the next `generate` call. `assistant_confidence_threshold` stops drafting once the draft's
probability of its own token falls below it, and 0 turns it off. With scikit-learn installed,
transformers also retunes that threshold during a call from the acceptance it observes.

Counters come from what `generate` does, never from estimates: forward hooks count target and
draft forward passes, and a wrapper around the candidate generator's `update_candidate_strategy`
records each round's draft length and accepted tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.utils import logging as transformers_logging

from cmsd_cli.bench.methods import HF, MethodSpec


_ASSISTANT_FIELDS = ("num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold")


class StopStringsAnywhere(StoppingCriteria):
    """Stop once the new text contains a stop string, wherever in the last verified block it ended.

    transformers' own `stop_strings=` cannot be used here: with `assistant_model=` it passes the stop
    strings to the assistant's `generate()` without a tokenizer, which raises (transformers 5.25),
    and it only matches a stop string that ends exactly at the last token.
    """

    def __init__(self, tokenizer, stop_strings: Sequence[str], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = [stop for stop in stop_strings if stop]
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_length :], skip_special_tokens=True)
        done = any(stop in text for stop in self.stop_strings)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


@dataclass
class AssistedRun:
    """New token ids of one `generate` call and what it did to produce them.

    `rounds` contains (drafted, accepted) per draft-then-verify round, or None when the installed
    transformers offers no candidate generator to observe.
    """

    tokens: list[int]
    target_calls: int
    draft_steps: int
    rounds: list[tuple[int, int]] | None = field(default=None)


class _RoundRecorder:
    """Wraps `target._get_candidate_generator` for one call so each round's outcome is recorded."""

    def __init__(self, target: torch.nn.Module) -> None:
        self.target = target
        self.rounds: list[tuple[int, int]] | None = None

    def __enter__(self) -> _RoundRecorder:
        original = getattr(self.target, "_get_candidate_generator", None)
        if original is None:
            return self
        self.rounds = []
        rounds = self.rounds

        def get_candidate_generator(*args, **kwargs):
            generator = original(*args, **kwargs)
            update = generator.update_candidate_strategy

            def record_round(input_ids, scores, num_matches):
                # `scores` contains the target's logits for every draft position plus the bonus position.
                rounds.append((int(scores.shape[1]) - 1, int(num_matches)))
                return update(input_ids, scores, num_matches)

            generator.update_candidate_strategy = record_round
            return generator

        # An instance attribute shadows the class method for this model object only.
        self.target._get_candidate_generator = get_candidate_generator
        return self

    def __exit__(self, *exc_info) -> None:
        self.target.__dict__.pop("_get_candidate_generator", None)


class _ForwardCounter:
    """Counts forward passes of one module while active."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.calls = 0
        self._handle = None

    def _count(self, module, args) -> None:
        self.calls += 1

    def __enter__(self) -> _ForwardCounter:
        self._handle = self.module.register_forward_pre_hook(self._count)
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.remove()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # The candidate generator calls the assistant's generate() with a generation config and extra
    # arguments together, and transformers warns about that mix. The user cannot act on the warning.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)


class AssistedGenerator:
    """Runs one HF method with `generate`, carrying the assistant state between calls as transformers does.

    `num_assistant_tokens` is the draft length of the first round (the fixed length with the
    "constant" schedule). With the "heuristic" schedule transformers stores the adapted length on the
    draft's generation config after each call, and the next call starts from it. This class keeps
    that value per method, so methods that share one draft model do not see each other's state.
    """

    def __init__(
        self,
        spec: MethodSpec,
        target: torch.nn.Module,
        draft: torch.nn.Module,
        *,
        num_assistant_tokens: int,
        confidence_threshold: float,
    ) -> None:
        if spec.kind != HF:
            raise ValueError(f"{spec.name!r} is not a transformers assisted-generation method")
        self.spec = spec
        self.target = target
        # A draft that transformers cannot run itself (the lean self-draft) offers the same draft as modules.
        self.draft = getattr(draft, "hf_model", draft)
        self.num_assistant_tokens = num_assistant_tokens
        self.confidence_threshold = confidence_threshold if spec.confidence_stop else 0.0

    def assistant_settings(self) -> dict:
        """Return the assistant settings that the next call starts from."""
        return {
            "num_assistant_tokens": self.num_assistant_tokens,
            "num_assistant_tokens_schedule": self.spec.schedule,
            "assistant_confidence_threshold": self.confidence_threshold,
        }

    def generate(
        self,
        input_ids: torch.Tensor,
        *,
        max_new_tokens: int,
        eos_ids: Sequence[int],
        pad_token_id: int | None,
        tokenizer=None,
        stop_strings: Sequence[str] = (),
    ) -> AssistedRun:
        """Greedy assisted generation of up to `max_new_tokens` tokens for one prompt (batch size 1)."""
        device = next(self.target.parameters()).device
        input_ids = input_ids.to(device)
        encoder_decoder = bool(self.target.config.is_encoder_decoder)
        # Encoder-decoder outputs start with the decoder start token; decoder-only outputs with the prompt.
        prompt_length = 1 if encoder_decoder else input_ids.shape[1]

        stopping = StoppingCriteriaList()
        if stop_strings and tokenizer is not None:
            stopping.append(StopStringsAnywhere(tokenizer, stop_strings, prompt_length))

        head = self.draft.get_output_embeddings()
        if hasattr(head, "set_prompt_tokens"):
            # As in cmsd's engine: the tokens of the prompt are draftable besides the frequent ones.
            head.set_prompt_tokens(input_ids.reshape(-1).tolist())

        config = self.draft.generation_config
        saved = {name: getattr(config, name, None) for name in _ASSISTANT_FIELDS}
        for name, value in self.assistant_settings().items():
            setattr(config, name, value)

        try:
            with _ForwardCounter(self.target) as target_counter, _ForwardCounter(self.draft) as draft_counter:
                with _RoundRecorder(self.target) as recorder, _quiet_transformers(), torch.inference_mode():
                    sequences = self.target.generate(
                        input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        assistant_model=self.draft,
                        do_sample=False,
                        num_beams=1,
                        max_new_tokens=max_new_tokens,
                        eos_token_id=list(eos_ids) or None,
                        pad_token_id=pad_token_id,
                        stopping_criteria=stopping,
                    )
            if self.spec.schedule == "heuristic":
                self.num_assistant_tokens = int(config.num_assistant_tokens)
        finally:
            for name, value in saved.items():
                setattr(config, name, value)

        return AssistedRun(
            tokens=sequences[0, prompt_length:].tolist(),
            target_calls=target_counter.calls,
            draft_steps=draft_counter.calls,
            rounds=recorder.rounds,
        )
