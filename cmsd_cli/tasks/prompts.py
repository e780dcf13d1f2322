"""Prompts for translation and summarization, shaped for each model family.

    t5    task prefixes the T5 models were trained with: "translate English to German: ...", "summarize: ..."
    bart  the article itself (summarization models fine-tuned on CNN/DailyMail); no translation
    chat  the tokenizer's chat template around an instruction to reply with only the translation or summary
    base  plain text: a one-shot translation ("Translate English to German.", an example pair, then
          "English: <source>\\nGerman:") or the article followed by "Summary:", both stopped at the
          first newline
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from cmsd_cli.tasks.languages import example_sentence, language_name, normalize_code

logger = logging.getLogger(__name__)

TASKS = ("translate", "summarize")

# The language pairs the original T5 checkpoints were trained to translate (Flan-T5 covers more).
_T5_TRANSLATION_PAIRS = {("en", "de"), ("en", "fr"), ("en", "ro")}


class UnsupportedTaskError(ValueError):
    """A task the model family cannot do, such as translation with a summarization-only BART model."""


class PromptTooLongError(ValueError):
    """A prompt whose template alone, without any source text, exceeds the token limit."""


@dataclass
class Prompt:
    """Token ids for the model, with the stop strings the task needs.

    For encoder-decoder models `input_ids` are the encoder input. `source` is the user's text as it
    appears in the prompt (shortened when `truncated`).
    """

    input_ids: torch.LongTensor  # [1, n]
    stop_strings: list[str]
    truncated: bool
    text: str  # the prompt as a string, before tokenization
    source: str
    # What fit_prompt needs to re-render the prompt around a shorter source.
    _render: Callable[[str], tuple[str, torch.LongTensor]] = field(repr=False, compare=False)
    _tokenizer: Any = field(repr=False, compare=False)

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]


def build_prompt(task: str, pair, text: str, *, src: str | None = None, tgt: str | None = None) -> Prompt:
    """Build the full prompt for `task` ("translate" or "summarize") on `text` for the family of `pair`.

    `pair` is a ModelPair (only its tokenizer, family and target_name are read). Translation needs
    `tgt`; `src` defaults to "en". The prompt is never shortened here (`truncated` is False): pass it
    to fit_prompt with the caller's token budget.

    Raises ValueError for an unknown task or a missing target language, UnknownLanguageError for an
    unknown language code, and UnsupportedTaskError for a task the family cannot do.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; use one of {', '.join(TASKS)}.")
    if task == "translate":
        if tgt is None:
            raise ValueError("Translation needs a target language code (tgt), such as 'de'.")
        src = normalize_code(src or "en")
        tgt = normalize_code(tgt)

    family = pair.family
    tokenizer = pair.tokenizer
    if family == "t5":
        template, stops, special = _t5_template(task, pair.target_name, src, tgt)
    elif family == "bart":
        template, stops, special = _bart_template(task)
    elif family == "chat":
        template, stops, special = _chat_template(task, tokenizer, src, tgt)
    elif family == "base":
        template, stops, special = _base_template(task, src, tgt)
    else:
        raise ValueError(f"Unknown model family {family!r}; use one of t5, bart, chat, base.")

    def render(source: str) -> tuple[str, torch.LongTensor]:
        prompt_text = template(source)
        ids = tokenizer(prompt_text, add_special_tokens=special, return_tensors="pt").input_ids
        return prompt_text, ids

    prompt_text, input_ids = render(text)
    return Prompt(
        input_ids=input_ids, stop_strings=stops, truncated=False, text=prompt_text, source=text,
        _render=render, _tokenizer=tokenizer,
    )


def fit_prompt(prompt: Prompt, max_prompt_tokens: int, *, side: str = "right") -> Prompt:
    """Return `prompt` shortened to at most `max_prompt_tokens` tokens by cutting only its source text.

    The template (instruction, one-shot example, chat markup, "Summary:" cue) stays whole. `side="right"`
    keeps the start of the source and drops its end, which suits news articles, whose key facts come
    first; `side="left"` keeps the end instead. The source is cut on token boundaries and re-rendered,
    and the cut is repeated until the re-tokenized prompt fits, so the result never exceeds the limit.
    A prompt that already fits is returned unchanged. For decoder-only models the caller passes
    `pair.context_length - max_new_tokens`; for encoder-decoder models `pair.context_length`.

    Raises PromptTooLongError when the template alone does not fit.
    """
    if side not in ("left", "right"):
        raise ValueError(f"Unknown truncation side {side!r}; use 'left' or 'right'.")
    if prompt.length <= max_prompt_tokens:
        return prompt

    template_only = prompt._render("")[1].shape[1]
    if template_only >= max_prompt_tokens:
        raise PromptTooLongError(
            f"The prompt template alone needs {template_only} tokens, more than the limit of {max_prompt_tokens}; "
            "lower --max-new-tokens or use a model with a longer context."
        )

    tokenizer = prompt._tokenizer
    source_ids = tokenizer(prompt.source, add_special_tokens=False).input_ids
    keep = min(len(source_ids), max_prompt_tokens - template_only)
    while True:
        kept_ids = source_ids[:keep] if side == "right" else source_ids[len(source_ids) - keep :]
        # A cut inside a multi-byte character decodes to U+FFFD; drop it rather than feed it to the model.
        kept = tokenizer.decode(kept_ids, skip_special_tokens=True).strip("\ufffd").strip()
        prompt_text, input_ids = prompt._render(kept)
        if input_ids.shape[1] <= max_prompt_tokens:
            break
        keep -= max(1, input_ids.shape[1] - max_prompt_tokens)

    logger.info("Cut the source text from %d to %d tokens to fit %d prompt tokens.", len(source_ids), keep, max_prompt_tokens)
    return replace(prompt, input_ids=input_ids, text=prompt_text, source=kept, truncated=True)


def _t5_template(task: str, target_name: str, src: str | None, tgt: str | None):
    if task == "summarize":
        return (lambda source: f"summarize: {source}"), [], True

    if (src, tgt) not in _T5_TRANSLATION_PAIRS and "flan" not in target_name.lower():
        logger.warning(
            "%s was trained to translate English to German, French and Romanian only; %s to %s may come out wrong.",
            target_name, language_name(src), language_name(tgt),
        )
    prefix = f"translate {language_name(src)} to {language_name(tgt)}: "
    return (lambda source: prefix + source), [], True


def _bart_template(task: str):
    if task == "translate":
        raise UnsupportedTaskError("BART-family models here are summarization models; use a t5, chat or base model to translate.")
    return (lambda source: source), [], True


def _chat_template(task: str, tokenizer, src: str | None, tgt: str | None):
    if not getattr(tokenizer, "chat_template", None):
        raise UnsupportedTaskError("The target's tokenizer has no chat template; load it with family 'base' instead of 'chat'.")

    if task == "translate":
        instruction = (
            f"Translate the following {language_name(src)} text into {language_name(tgt)}. "
            "Reply with the translation only, without notes or quotation marks."
        )
    else:
        instruction = (
            "Summarize the following article in two or three sentences. "
            "Reply with the summary only, without a heading."
        )

    def template(source: str) -> str:
        messages = [{"role": "user", "content": f"{instruction}\n\n{source}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # The rendered template already contains BOS and the role markers.
    return template, [], False


def _base_template(task: str, src: str | None, tgt: str | None):
    # Each field must stay on one line, because a newline ends the model's output.
    def one_line(source: str) -> str:
        return " ".join(source.split())

    if task == "summarize":
        return (lambda source: f"Article: {one_line(source)}\nSummary:"), ["\n"], True

    # The blank line after the example keeps Gemma 3 270M base from repeating the example instead of
    # translating (seen on 1 of 8 newstest2014 sentences without it, 0 of 8 with it).
    source_name, target_name = language_name(src), language_name(tgt)
    header = f"Translate {source_name} to {target_name}.\n\n"
    example = f"{source_name}: {example_sentence(src)}\n{target_name}: {example_sentence(tgt)}\n\n"
    return (lambda source: f"{header}{example}{source_name}: {one_line(source)}\n{target_name}:"), ["\n"], True
