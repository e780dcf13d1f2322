"""Self-drafts: a cheaper copy of the target model used as its own draft, so no second model is needed.

`self-int8` quantises every Linear layer of a copy of the target to int8 with dynamic activation
quantisation (`torch.ao.quantization.quantize_dynamic`). Small models usually tie the output projection
(LM head) to the input embedding table, which quantize_dynamic does not convert. So the copy gets an
untied Linear head with the same weights, and the largest matrix multiplication of a model with a big
vocabulary, such as Gemma 3 270M, is quantised too.

Dynamic int8 kernels exist for the CPU only (fbgemm on x86, qnnpack on ARM). So with device "auto",
load_pair puts a pair with a self-int8 draft on the CPU, and an explicit CUDA or MPS device is rejected
with a message to pass a smaller model of the same family as the draft instead.

`self-int8-top<N>k` (for example `self-int8-top16k`) is the same draft with an LM head over only the
N x 1024 most frequent tokens of the target's vocabulary plus the tokens of the current prompt
(see FrequentTokenHead). With Gemma 3's 262,144-token vocabulary the full int8 head is most of a
draft step, so the smaller head makes drafting much cheaper. It only changes which tokens the draft
can propose: the target still verifies every token and supplies the ones the draft cannot, so the
output of a lossless verification rule is unchanged. The frequency rankings ship with cmsd
(`cmsd_cli/models/data/`, built by `scripts/build_token_ranks.py`); a target whose vocabulary has
no ranking gets the full head, with a warning.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import warnings
from importlib import resources

import torch
from torch import nn

from cmsd_cli.models.errors import ModelLoadError
from cmsd_cli.models.lean_draft import LeanGemma3Draft, supports_lean_draft

logger = logging.getLogger(__name__)

SELF_DRAFTS = ("self-int8", "self-int8-top<N>k")
_TOP_PATTERN = re.compile(r"self-int8-top(\d+)k")

# Token-frequency rankings per vocabulary: (model_type prefix, vocabulary rows) -> data file.
# All Gemma 3 models share one 262,144-token tokenizer.
_TOKEN_RANKS = {("gemma3", 262144): "gemma3_token_ranks.bin"}


def is_self_draft(spec: str | None) -> bool:
    if spec is None:
        return False
    kind = spec.strip().lower()
    return kind == "self-int8" or _TOP_PATTERN.fullmatch(kind) is not None


def make_self_draft(spec: str, target: nn.Module, device: torch.device) -> nn.Module:
    """Build the self-draft named by `spec` from a loaded target."""
    kind = spec.strip().lower()
    if kind == "self-int8":
        return int8_self_draft(target, device)
    match = _TOP_PATTERN.fullmatch(kind)
    if match is not None and int(match.group(1)) > 0:
        head_tokens = int(match.group(1)) * 1024
        ranked = token_ranking(target)
        if device.type == "cpu" and supports_lean_draft(target) and ranked is not None:
            return lean_self_draft(target, device, ranked[:head_tokens])
        return int8_self_draft(target, device, head_tokens=head_tokens)
    raise ModelLoadError(
        f"Unknown self-draft {spec!r}; use self-int8 or self-int8-top<N>k with N at least 1 (for example self-int8-top16k)."
    )


def int8_self_draft(
    target: nn.Module, device: torch.device, head_tokens: int | None = None, head: nn.Module | None = None
) -> nn.Module:
    """Return a copy of `target` with all Linear layers, the untied LM head included, dynamically quantised to int8.

    With `head_tokens`, the LM head covers only that many of the most frequent tokens (and each
    prompt's own tokens), see FrequentTokenHead. `head` gives an already built head to use instead,
    which then is shared, not copied. The target is left unchanged. For a float32 target the draft
    shares every tensor it does not quantise (embedding, norms) with the target, so the extra memory
    is the int8 weights alone.
    """
    if device.type != "cpu":
        raise ModelLoadError(
            f"The self-int8 draft needs the CPU (PyTorch has dynamic int8 kernels only there), but the target is on {device}; "
            "pass a smaller model of the same family with --draft, or use --device cpu."
        )

    draft = _copy_sharing_tensors(target)
    ranked = token_ranking(target) if head_tokens is not None and head is None else None
    if head_tokens is not None and head is None and ranked is None:
        logger.warning(
            "cmsd has no token-frequency ranking for this target's vocabulary, so the draft keeps its full LM head."
        )
    if head is not None:
        # The given head is already quantised, and quantize_dynamic below leaves quantised layers alone.
        draft.set_output_embeddings(head)
    elif ranked is not None:
        _use_frequent_token_head(draft, ranked[:head_tokens])
    else:
        _untie_lm_head(draft)

    with warnings.catch_warnings():
        # torch 2.10+ warns that torch.ao.quantization moves to torchao, but still ships and runs it.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # NOTE: torch.ao.quantization is deprecated and announced for removal; torchao's
        # Int8DynamicActivationInt8WeightConfig with quantize_() is the replacement once this stops importing.
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        draft = quantize_dynamic(draft, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)

    # Parameters left float are the target's own, so their requires_grad flags are left alone too.
    return draft.eval()


def lean_self_draft(target: nn.Module, device: torch.device, frequent: torch.Tensor) -> nn.Module:
    """Return a LeanGemma3Draft with int8 layers and an int8 head over the token ids in `frequent`."""
    head = FrequentTokenHead(target.get_output_embeddings().weight, frequent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        head = quantize_dynamic(head, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
        # Transformers' modules for assisted generation share this head, so its int8 rows exist once.
        draft = LeanGemma3Draft(target, head, lambda: int8_self_draft(target, device, head=head))
    return draft.eval()


def _copy_sharing_tensors(target: nn.Module) -> nn.Module:
    """Copy the module tree of a float32 target while sharing its parameters and buffers.

    quantize_dynamic only reads the float weights of the layers it replaces, and the layers it keeps
    (embedding, norms) are only read during decoding, so no tensor needs its own copy. Other dtypes
    need a float32 copy for quantize_dynamic, made from a full copy so the target keeps its dtype.
    """
    if target.dtype != torch.float32:
        return copy.deepcopy(target).float()
    memo = {id(tensor): tensor for tensor in (*target.parameters(), *target.buffers())}
    return copy.deepcopy(target, memo)


def _untie_lm_head(draft: nn.Module) -> None:
    """Give the draft its own Linear LM head over the same weights, so quantize_dynamic converts it."""
    head = draft.get_output_embeddings()
    if head is None or not isinstance(head, nn.Linear):
        return

    # Built on the meta device to skip a random initialisation of a vocabulary-sized matrix.
    untied = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None, device="meta")
    untied.weight = nn.Parameter(head.weight.detach(), requires_grad=False)
    if head.bias is not None:
        untied.bias = nn.Parameter(head.bias.detach(), requires_grad=False)
    # The config keeps tie_word_embeddings as it was: T5 reads that flag at run time to scale its
    # decoder output, and nothing re-ties weights after loading.
    draft.set_output_embeddings(untied)


def token_ranking(model: nn.Module) -> torch.Tensor | None:
    """Return the shipped frequency ranking of `model`'s vocabulary (token ids, most frequent first), or None."""
    head = model.get_output_embeddings()
    if head is None or getattr(model.config, "final_logit_softcapping", None) is not None:
        # Softcapping after the head would turn the -inf of tokens outside the head into finite logits.
        return None
    model_type = str(getattr(model.config, "model_type", ""))
    rows = head.weight.shape[0]
    for (prefix, vocab_rows), file_name in _TOKEN_RANKS.items():
        if model_type.startswith(prefix) and rows == vocab_rows:
            data = resources.files("cmsd_cli.models").joinpath("data", file_name).read_bytes()
            ids = torch.frombuffer(bytearray(data), dtype=torch.int32)  # stored little-endian
            if sys.byteorder != "little":
                # NOTE: not run on a big-endian machine yet; the tests cover the little-endian read.
                ids = ids.view(torch.uint8).view(-1, 4).flip(1).reshape(-1).view(torch.int32)
            return ids.long()
    return None


class FrequentTokenHead(nn.Module):
    """An LM head over a fixed set of frequent tokens plus the tokens of the current prompt.

    The frequent rows are an nn.Linear, which quantize_dynamic turns into int8. The prompt's rows
    (names, numbers and other rare tokens a translation or summary copies) are float rows taken
    from the full weight matrix whenever `set_prompt_tokens` is called. Called by transformers, the
    head returns logits over the whole vocabulary with -inf outside its tokens. A runner that supports
    the head sets `compact` and gets only the head's own logits, ordered as `token_ids`, which saves
    the work of filling and scanning the whole vocabulary on every draft step.
    """

    def __init__(self, weight: torch.Tensor, frequent: torch.Tensor) -> None:
        super().__init__()
        self.vocab_rows, hidden = weight.shape
        frequent = frequent[frequent < self.vocab_rows]
        self.frequent = nn.Linear(hidden, len(frequent), bias=False, device="meta")
        self.frequent.weight = nn.Parameter(weight.detach()[frequent], requires_grad=False)
        self.full_weight = weight.detach()  # shared with the target; only rows are read from it
        self.frequent_ids = frequent
        self.is_frequent = torch.zeros(self.vocab_rows, dtype=torch.bool)
        self.is_frequent[frequent] = True
        self.extra_ids = frequent.new_empty(0)
        self.extra_weight = weight.new_empty(0, hidden)
        self.token_ids = frequent
        self.compact = False

    @property
    def out_features(self) -> int:
        return self.vocab_rows

    def set_prompt_tokens(self, tokens: list[int]) -> None:
        """Add the rows of the prompt's tokens that the frequent set lacks, replacing the previous prompt's."""
        ids = torch.tensor(sorted(set(tokens)), dtype=torch.long)
        ids = ids[(ids >= 0) & (ids < self.vocab_rows)]
        self.extra_ids = ids[~self.is_frequent[ids]]
        self.extra_weight = self.full_weight[self.extra_ids].float()
        self.token_ids = torch.cat([self.frequent_ids, self.extra_ids])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.frequent(hidden)
        if self.extra_ids.numel():
            logits = torch.cat([logits, hidden.float() @ self.extra_weight.t()], dim=-1)
        if self.compact:
            return logits
        full = logits.new_full((*logits.shape[:-1], self.vocab_rows), float("-inf"))
        full[..., self.token_ids] = logits
        return full


def _use_frequent_token_head(draft: nn.Module, frequent: torch.Tensor) -> None:
    head = draft.get_output_embeddings()
    draft.set_output_embeddings(FrequentTokenHead(head.weight, frequent))
