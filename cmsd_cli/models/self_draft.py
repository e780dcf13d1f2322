"""Self-drafts: a cheaper copy of the target model used as its own draft, so no second model is needed.

`self-int8` quantises every Linear layer of a copy of the target to int8 with dynamic activation
quantisation (`torch.ao.quantization.quantize_dynamic`). Small models usually tie the output projection
(LM head) to the input embedding table, which quantize_dynamic does not convert. So the copy gets an
untied Linear head with the same weights, and the largest matrix multiplication of a model with a big
vocabulary, such as Gemma 3 270M, is quantised too.

Dynamic int8 kernels exist for the CPU only (fbgemm on x86, qnnpack on ARM). So with device "auto",
load_pair puts a pair with a self-int8 draft on the CPU, and an explicit CUDA or MPS device is rejected
with a message to pass a smaller model of the same family as the draft instead.
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

from cmsd_cli.models.errors import ModelLoadError

logger = logging.getLogger(__name__)

SELF_DRAFTS = ("self-int8",)


def is_self_draft(spec: str | None) -> bool:
    return spec is not None and spec.strip().lower() in SELF_DRAFTS


def make_self_draft(spec: str, target: nn.Module, device: torch.device) -> nn.Module:
    """Build the self-draft named by `spec` from a loaded target."""
    kind = spec.strip().lower()
    if kind == "self-int8":
        return int8_self_draft(target, device)
    raise ModelLoadError(f"Unknown self-draft {spec!r}; the known ones are {', '.join(SELF_DRAFTS)}.")


def int8_self_draft(target: nn.Module, device: torch.device) -> nn.Module:
    """Return a copy of `target` with all Linear layers, the untied LM head included, dynamically quantised to int8.

    The target is left unchanged. For a float32 target the draft shares every tensor it does not
    quantise (embedding, norms) with the target, so the extra memory is the int8 weights alone.
    """
    if device.type != "cpu":
        raise ModelLoadError(
            f"The self-int8 draft needs the CPU (PyTorch has dynamic int8 kernels only there), but the target is on {device}; "
            "pass a smaller model of the same family with --draft, or use --device cpu."
        )

    draft = _copy_sharing_tensors(target)
    _untie_lm_head(draft)

    with warnings.catch_warnings():
        # torch 2.10+ warns that torch.ao.quantization moves to torchao, but still ships and runs it.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # NOTE: torch.ao.quantization is deprecated and announced for removal; torchao's
        # Int8DynamicActivationInt8WeightConfig with quantize_() is the replacement once this stops importing.
        from torch.ao.quantization import quantize_dynamic

        draft = quantize_dynamic(draft, {nn.Linear}, dtype=torch.qint8, inplace=True)

    # Parameters left float are the target's own, so their requires_grad flags are left alone too.
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
