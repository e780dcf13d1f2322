"""Logits processors and sampling warpers, applied per position exactly as `generate()` applies them per step.

Processors come from the target's generation config and from the caller. Each verified position i
is processed with the token ids that precede it (committed tokens plus draft tokens 0..i-1), which is
what `generate()` would have passed at that step. Generation-config settings that change the output
but are not supported here are rejected with an error instead of being ignored.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, LogitsProcessorList
from transformers.generation.logits_process import (
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    InfNanRemoveLogitsProcessor,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# Generation-config fields that change greedy or sampled output and have no equivalent here.
_UNSUPPORTED_FIELDS = {
    "encoder_repetition_penalty": lambda v: v is not None and v != 1.0,
    "encoder_no_repeat_ngram_size": lambda v: v is not None and v > 0,
    "sequence_bias": lambda v: v is not None,
    "exponential_decay_length_penalty": lambda v: v is not None,
    "guidance_scale": lambda v: v is not None and v != 1,
    "watermarking_config": lambda v: v is not None,
    "forced_decoder_ids": lambda v: v is not None,
}


def _generation_config(model: torch.nn.Module) -> GenerationConfig:
    config = getattr(model, "generation_config", None)
    return config if config is not None else GenerationConfig()


def build_logits_processors(
    model: torch.nn.Module,
    *,
    prompt_length: int,
    max_length: int,
    eos_token_ids: list[int],
    overrides: dict,
    extra: LogitsProcessorList | None,
) -> LogitsProcessorList:
    """Collect the processors that `generate()` would apply for the target's generation config.

    `prompt_length` is the length of the sequence the processors see before the first new token
    (the prompt for decoder-only models, the decoder start token for encoder-decoder models).
    `overrides` contains caller settings (repetition_penalty, no_repeat_ngram_size, min_new_tokens)
    that take precedence over the generation config.
    """
    config = _generation_config(model)

    for name, is_set in _UNSUPPORTED_FIELDS.items():
        value = getattr(config, name, None)
        if is_set(value):
            raise ValueError(
                f"the model's generation config sets {name}={value!r}, which speculative decoding here does not "
                f"support; clear it (model.generation_config.{name} = None) to continue"
            )

    def setting(name: str):
        if overrides.get(name) is not None:
            return overrides[name]
        return getattr(config, name, None)

    eos = torch.tensor(eos_token_ids, dtype=torch.long) if eos_token_ids else None
    processors = LogitsProcessorList()

    repetition_penalty = setting("repetition_penalty")
    if repetition_penalty is not None and repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    no_repeat_ngram_size = setting("no_repeat_ngram_size")
    if no_repeat_ngram_size:
        processors.append(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
    if config.bad_words_ids is not None:
        processors.append(NoBadWordsLogitsProcessor(config.bad_words_ids, eos))
    min_length = setting("min_length")
    if min_length and eos is not None:
        processors.append(MinLengthLogitsProcessor(min_length, eos))
    min_new_tokens = setting("min_new_tokens")
    if min_new_tokens and eos is not None:
        processors.append(MinNewTokensLengthLogitsProcessor(prompt_length, min_new_tokens, eos))
    if config.forced_bos_token_id is not None:
        processors.append(ForcedBOSTokenLogitsProcessor(config.forced_bos_token_id))
    if config.forced_eos_token_id is not None:
        processors.append(ForcedEOSTokenLogitsProcessor(max_length, config.forced_eos_token_id))
    if config.remove_invalid_values:
        processors.append(InfNanRemoveLogitsProcessor())
    if config.suppress_tokens is not None:
        processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens))
    if config.begin_suppress_tokens is not None:
        begin_index = prompt_length if (prompt_length > 1 or config.forced_bos_token_id is None) else prompt_length + 1
        processors.append(SuppressTokensAtBeginLogitsProcessor(config.begin_suppress_tokens, begin_index))
    if extra:
        processors.extend(extra)
    return processors


def build_warpers(temperature: float, top_k: int | None, top_p: float | None) -> LogitsProcessorList:
    """Sampling warpers in the order `generate()` applies them: temperature, top-k, top-p."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k is not None and top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return warpers


def process_block(
    processors: LogitsProcessorList,
    prefix: list[int],
    block_tokens: list[int],
    logits: torch.Tensor,
) -> torch.Tensor:
    """Apply `processors` to each row of `logits` ([n, V]) with the ids that precede that position.

    Row i is scored after `prefix + block_tokens[:i]`, as `generate()` would have seen it.
    """
    if not processors:
        return logits
    rows = []
    for i in range(logits.shape[0]):
        ids = torch.tensor([prefix + block_tokens[:i]], dtype=torch.long, device=logits.device)
        rows.append(processors(ids, logits[i : i + 1].clone())[0])
    return torch.stack(rows)
