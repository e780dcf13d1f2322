"""`load_pair`: the target model, its draft and their shared tokenizer, on one device, ready for decoding."""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cmsd_cli.models import packaged
from cmsd_cli.models.device import resolve_device, resolve_dtype
from cmsd_cli.models.errors import ModelLoadError
from cmsd_cli.models.kernels import use_skinny_linear_kernels
from cmsd_cli.models.gguf_cache import converted_gguf, model_class_for
from cmsd_cli.models.hub import load_from_hub
from cmsd_cli.models.presets import DEFAULT_PRESET, get_preset
from cmsd_cli.models.self_draft import make_self_draft
from cmsd_cli.models.spec import ModelSpec, parse_spec

logger = logging.getLogger(__name__)

FAMILIES = ("t5", "bart", "chat", "base")
NO_DRAFT = "none"

_T5_MODEL_TYPES = {"t5", "mt5", "umt5", "longt5", "switch_transformers"}
# Names of instruction-tuned checkpoints: "...-Instruct", "...-chat", "gemma-3-270m-it".
_INSTRUCT_NAME = re.compile(r"instruct|chat|[-_]it(?:$|[-_.])", re.IGNORECASE)
_FALLBACK_CONTEXT_LENGTH = 2048
_T5_CONTEXT_LENGTH = 512


@dataclass
class ModelPair:
    """A target model, its draft (or None) and the tokenizer both use, with what prompts and the engine need to know."""

    target: torch.nn.Module
    draft: torch.nn.Module | None
    tokenizer: Any
    target_name: str
    draft_name: str | None
    family: str  # "t5" | "bart" | "chat" | "base"
    is_encoder_decoder: bool
    device: torch.device  # where input ids go (the input embedding's device when the target spans GPUs)
    dtype: torch.dtype
    context_length: int  # max input tokens the target accepts (encoder input for encoder-decoder models)
    preset: str | None
    # Number of logits rows target and draft share; ids at or above it exist in at most one of them.
    vocab_size: int
    eos_token_id: int | list[int] | None


@dataclass
class _Loaded:
    model: torch.nn.Module
    tokenizer_future: Future  # the tokenizer, or None when the source has none
    name: str
    spec: ModelSpec

    @property
    def tokenizer(self) -> Any | None:
        return self.tokenizer_future.result()


def load_pair(
    preset: str | None = None,
    target: str | None = None,
    draft: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    *,
    family: str | None = None,
) -> ModelPair:
    """Load a target model, its draft and their tokenizer.

    preset: a name from PRESETS; with neither preset nor target, DEFAULT_PRESET ("offline") is used.
    target, draft: model specs (hub id, model folder, .gguf file, package:<name>; drafts also take
        "self-int8" and "none"). An explicit target or draft replaces the preset's. With a target but no
        preset and no draft, decoding is target-only.
    device: auto | cpu | cuda | cuda:N | mps. "auto" is the CPU when the draft is self-int8 (the default
        offline preset), whose int8 kernels exist for the CPU only. dtype: auto | float32 | bfloat16 | float16.
    family: overrides the prompt family ("t5", "bart", "chat", "base") that is otherwise taken from the
        preset or detected from the model.

    Raises ModelLoadError, whose message is one sentence for the user, for anything that cannot be loaded.
    """
    preset_name = preset
    if preset_name is None and target is None:
        preset_name = DEFAULT_PRESET
    chosen = get_preset(preset_name) if preset_name is not None else None

    target_text = target if target is not None else chosen.target
    draft_text = draft
    if draft_text is None and chosen is not None:
        draft_text = chosen.draft
    if draft_text is not None and draft_text.strip().lower() == NO_DRAFT:
        draft_text = None
    if family is None and chosen is not None and target_text == chosen.target:
        family = chosen.family
    if family is not None and family not in FAMILIES:
        raise ModelLoadError(f"Unknown model family {family!r}; use one of {', '.join(FAMILIES)}.")

    target_spec = parse_spec(target_text, role="target")
    draft_spec = parse_spec(draft_text, role="draft") if draft_text is not None else None

    # A self-int8 draft runs on the CPU only, so "auto" picks the CPU for such a pair, GPU or not.
    if device == "auto" and draft_spec is not None and draft_spec.kind == "self":
        if resolve_device("auto").type != "cpu":
            logger.info("Using the CPU, because the %s draft runs only there; pass --device to override.", draft_spec.value)
        device = "cpu"
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)

    # Tokenizers load in a worker thread, because parsing a large tokenizer.json is mostly Python work
    # (3.4 s of CPU time for Gemma 3 270M). It can then overlap the weight loading and quantisation,
    # whose torch kernels release the GIL, when a core is free.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cmsd-tokenizer") as pool:
        loaded_target = _load_model(target_spec, "target", resolved_device, resolved_dtype, pool, allow_spread=True)

        draft_model, draft_name = None, None
        vocab_size = _embedding_rows(loaded_target.model)
        if draft_spec is not None and draft_spec.kind == "self":
            started = time.perf_counter()
            draft_model = make_self_draft(draft_spec.value, loaded_target.model, resolved_device)
            draft_name = draft_spec.value
            logger.info("Built the %s draft in %.1f s.", draft_name, time.perf_counter() - started)
        elif draft_spec is not None:
            loaded_draft = _load_model(draft_spec, "draft", resolved_device, resolved_dtype, pool, allow_spread=False)
            vocab_size = shared_vocab_size(loaded_target, loaded_draft)
            draft_model, draft_name = loaded_draft.model, loaded_draft.name

        tokenizer = loaded_target.tokenizer
    if tokenizer is None:
        raise ModelLoadError(
            f"The target model {target_text!r} has no tokenizer files; save the tokenizer beside the model "
            "(tokenizer.save_pretrained) and try again."
        )

    # Decoding feeds one row per step and verification a few; these kernels make both cheaper on the
    # CPU for every method alike, target-only decoding included. The self-draft is built before this
    # and its quantised layers are not nn.Linear, so only a separately loaded draft is affected.
    use_skinny_linear_kernels(loaded_target.model)
    if draft_model is not None:
        use_skinny_linear_kernels(draft_model)

    config = loaded_target.model.config
    return ModelPair(
        target=loaded_target.model,
        draft=draft_model,
        tokenizer=tokenizer,
        target_name=loaded_target.name,
        draft_name=draft_name,
        family=family or detect_family(config, tokenizer, loaded_target.name),
        is_encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
        device=loaded_target.model.get_input_embeddings().weight.device,
        dtype=resolved_dtype,
        context_length=context_length(config, tokenizer),
        preset=chosen.name if chosen is not None else None,
        vocab_size=vocab_size,
        eos_token_id=_eos_token_id(loaded_target.model, tokenizer),
    )


def shared_vocab_size(target: _Loaded, draft: _Loaded) -> int:
    """Return the number of token ids target and draft share; raise ModelLoadError if their vocabularies differ.

    Embedding tables may differ in padding rows only, as in Qwen2.5 0.5B and 7B, whose tables differ in
    height while their one tokenizer is shorter than both. The sizes may also differ when every token at
    or above the smaller size is an added special token (an image placeholder, say) that text prompts
    never use. When the draft has its own tokenizer, it must map the shared ids to the same strings.

    NOTE: the Qwen2.5 and Gemma 3 (270M with 4B) presets rely on these rules but were never loaded
    here, because the model hub is unreachable from the machines this was written on.
    """
    tokenizer = target.tokenizer
    target_rows, draft_rows = _embedding_rows(target.model), _embedding_rows(draft.model)
    shared = min(target_rows, draft_rows)

    if target_rows != draft_rows:
        beyond = [token for token, index in tokenizer.get_vocab().items() if index >= shared]
        special = set(tokenizer.all_special_tokens) | {str(token) for token in tokenizer.added_tokens_decoder.values()}
        if any(token not in special for token in beyond):
            raise ModelLoadError(
                f"The draft {draft.name!r} has a vocabulary of {draft_rows} tokens but the target {target.name!r} has "
                f"{target_rows} (tokenizer: {len(tokenizer)}); pass a draft from the target's model family, or self-int8."
            )

    if draft.tokenizer is not None and _shared_vocab(draft.tokenizer, shared) != _shared_vocab(tokenizer, shared):
        raise ModelLoadError(
            f"The draft {draft.name!r} and the target {target.name!r} both have {shared} shared token ids but their "
            "tokenizers map them to different strings; pass a draft from the target's model family, or self-int8."
        )
    return shared


def detect_family(config, tokenizer, name: str) -> str:
    """Guess the prompt family: t5 by model type, bart for other encoder-decoders, chat for instruction-tuned decoders."""
    if config.model_type in _T5_MODEL_TYPES:
        return "t5"
    if getattr(config, "is_encoder_decoder", False):
        return "bart"
    # Base checkpoints often ship a chat template too, so the name must also mark the model as instruction-tuned.
    if getattr(tokenizer, "chat_template", None) and _INSTRUCT_NAME.search(name):
        return "chat"
    return "base"


def context_length(config, tokenizer) -> int:
    """Return the max input tokens the target accepts: its position limit, else the tokenizer's, else a default.

    The default is 512 for T5 models and 2048 (with a warning) for the rest.
    """
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text_config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value

    # Tokenizers without a limit report a huge sentinel (about 1e30).
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    # T5 has relative positions and so no hard limit, but it was pretrained on 512-token inputs.
    if config.model_type in _T5_MODEL_TYPES:
        return _T5_CONTEXT_LENGTH
    logger.warning("The target sets no context length; assuming %d tokens.", _FALLBACK_CONTEXT_LENGTH)
    return _FALLBACK_CONTEXT_LENGTH


def _load_model(
    spec: ModelSpec, role: str, device: torch.device, dtype: torch.dtype, pool: ThreadPoolExecutor, *, allow_spread: bool
) -> _Loaded:
    started = time.perf_counter()

    if spec.kind == "hub":
        model, tokenizer_future = load_from_hub(
            spec.value, role, lambda **kwargs: _load_folder(spec.value, role, device, dtype, allow_spread, pool, **kwargs)
        )
        name = spec.value
    else:
        if spec.kind == "local":
            folder = spec.path
        elif spec.kind == "gguf":
            folder = converted_gguf(spec.path)
        elif spec.kind == "package":
            folder = packaged.converted_packaged(packaged.packaged_model(spec.value))
        else:
            raise ModelLoadError(f"{spec.text!r} cannot be loaded as the {role} model.")
        model, tokenizer_future = _load_folder(str(folder), role, device, dtype, allow_spread, pool)
        name = Path(spec.value).name if spec.kind in ("local", "gguf") else spec.text

    logger.info("Loaded the %s model %s in %.1f s.", role, name, time.perf_counter() - started)
    return _Loaded(model=model, tokenizer_future=tokenizer_future, name=name, spec=spec)


def _load_folder(
    source: str,
    role: str,
    device: torch.device,
    dtype: torch.dtype,
    allow_spread: bool,
    pool: ThreadPoolExecutor,
    **hub_kwargs,
) -> tuple[torch.nn.Module, Future]:
    """Load a model from a folder or hub id, and start loading its tokenizer (None when there is none) in `pool`."""
    from transformers import AutoConfig

    tokenizer = pool.submit(_load_tokenizer, source, hub_kwargs)
    try:
        config = AutoConfig.from_pretrained(source, **hub_kwargs)
    except ValueError as error:
        raise ModelLoadError(f"The {role} model {source!r} has a config transformers cannot use ({error}).") from error

    model_class = model_class_for(config)
    placement = _placement(model_class, config, device, dtype) if allow_spread else {}
    try:
        model = model_class.from_pretrained(source, config=config, dtype=dtype, **placement, **hub_kwargs)
    except ValueError as error:
        raise ModelLoadError(f"The {role} model {source!r} could not be loaded by transformers ({error}).") from error
    if not placement:
        model.to(device)
    model.eval()
    return model, tokenizer


def _load_tokenizer(source: str, hub_kwargs: dict) -> Any | None:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, **hub_kwargs)
    except (OSError, ValueError, TypeError) as error:
        logger.debug("No tokenizer for %s: %s", source, error)
        return None


def _placement(model_class, config, device: torch.device, dtype: torch.dtype) -> dict:
    """Return from_pretrained arguments that spread a model over all GPUs when it does not fit on one.

    NOTE: written against the transformers and accelerate documentation but never run on several GPUs;
    single-device loading (CPU, one GPU) is what the tests cover.
    """
    if device.type != "cuda" or device.index is not None or torch.cuda.device_count() < 2:
        return {}

    from accelerate import init_empty_weights

    with init_empty_weights():
        skeleton = model_class.from_config(config)
    needed = sum(parameter.numel() for parameter in skeleton.parameters()) * torch.tensor([], dtype=dtype).element_size()
    free, _total = torch.cuda.mem_get_info(0)
    # Leave room for activations and the KV cache.
    if needed < 0.8 * free:
        return {}
    logger.info("The target needs about %.1f GiB, more than one GPU has free; spreading it over %d GPUs.",
                needed / 2**30, torch.cuda.device_count())
    return {"device_map": "auto"}


def _embedding_rows(model: torch.nn.Module) -> int:
    return model.get_input_embeddings().weight.shape[0]


def _shared_vocab(tokenizer, shared: int) -> dict[str, int]:
    return {token: index for token, index in tokenizer.get_vocab().items() if index < shared}


def _eos_token_id(model: torch.nn.Module, tokenizer) -> int | list[int] | None:
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.eos_token_id is not None:
        return generation_config.eos_token_id
    if model.config.eos_token_id is not None:
        return model.config.eos_token_id
    return tokenizer.eos_token_id
