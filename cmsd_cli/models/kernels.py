"""Faster CPU kernels for the float32 Linear layers of a model when they see few input rows.

A decoding step feeds one row (one token) through every Linear layer, and verifying k draft tokens
feeds k + 1 rows. On the CPU, `torch.nn.functional.linear` handles such skinny inputs poorly with
the MKL build of PyTorch on AMD CPUs. For Gemma 3's 262,144 x 640 LM head (the largest matrix of a
small model with a big vocabulary) it takes about 57 ms for one row, 124 ms for two and 100 ms for
four. The same product written as W @ x^T, which streams the weight matrix once, takes 20, 22 and
26 ms (torch 2.13, 2-core AMD EPYC, medians of 15, idle machine). For one row that product
goes to a slow matrix-vector kernel too, so the row is doubled to keep the fast kernel. The
transformer layers gain as well: 54 matrices of 2048 x 640 (about Gemma 3 270M's share of weights
outside the head) take 23.9 ms with `linear` and 8.7 ms this way for one row. Together, one
target-only decoding step of Gemma 3 270M drops from about 95 ms to about 45 ms.

The patch is applied to the target model that every method uses, target-only decoding included, so
speed comparisons stay fair. Results differ from `linear` only by float rounding, as any change of
kernel or batch shape does.
"""

from __future__ import annotations

import logging
import types

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Beyond this many input rows (prompt prefill) the default kernel is as fast or faster.
MAX_SKINNY_ROWS = 64


def _skinny_linear_forward(self: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    rows = hidden.reshape(-1, self.in_features)
    count = rows.shape[0]
    if count > MAX_SKINNY_ROWS:
        return nn.functional.linear(hidden, self.weight, self.bias)
    if count == 1:
        rows = torch.cat([rows, rows])
    # [out, in] @ [in, rows] keeps the weight as the streamed operand.
    output = torch.mm(self.weight, rows.t()).t()[:count]
    if self.bias is not None:
        output = output + self.bias
    return output.reshape(*hidden.shape[:-1], self.out_features)


def use_skinny_linear_kernels(model: nn.Module) -> int:
    """Switch the float32 CPU nn.Linear layers of `model` to the W @ x^T kernel for few rows; return how many."""
    patched = 0
    for module in model.modules():
        if type(module) is not nn.Linear:
            continue
        if module.weight.device.type != "cpu" or module.weight.dtype != torch.float32:
            continue
        module.forward = types.MethodType(_skinny_linear_forward, module)
        patched += 1
    if patched:
        logger.debug("Using the skinny-input Linear kernel for %d layers of %s.", patched, type(model).__name__)
    return patched
