"""Dropout masks drawn by numpy on a CPU while a baseline's encoder trains.

Why: torch's CPU dropout draws its mask with `bernoulli_`, which on a CPU without Intel's MKL path (an
AMD EPYC, say) takes one mt19937 number per element in a serial loop, mostly for the attention
probabilities' masks: an encoder run trained 1.06-1.10x faster without it (docs/benchmarks.md). Here
each mask is 16-bit draws of numpy's SFC64, seeded by the run's seed, compared with the keep rate: the
same inverted dropout (kept values scaled by 1/(1-p), as torch's), other masks, and the same masks on
every CPU (torch's differ between Intel's MKL path and the rest). A GPU keeps torch's own."""
from __future__ import annotations

import contextlib

import numpy as np

LEVELS = 1 << 16  # a mask value is one 16-bit draw: keep rates to 1/65536


def dropout_fn(rng: np.random.Generator):
    """A stand-in for torch.nn.functional.dropout drawing its masks from `rng`."""
    import torch

    def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False):
        if p < 0.0 or p > 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        if not training or p == 0.0:
            return input
        if p == 1.0:
            return input.mul_(0.0) if inplace else input * 0.0
        keep = 1.0 - p
        n = input.numel()
        draws = rng.bit_generator.random_raw(-(-n // 4)).view(np.uint16)[:n]
        mask = torch.from_numpy(draws < round(keep * LEVELS)).view(input.shape)
        noise = mask.to(input.dtype).div_(keep)  # torch's order: the mask, then divided by the keep rate
        return input.mul_(noise) if inplace else input * noise
    return dropout


def uses_numpy_masks() -> bool:
    """Where masks come from numpy: a CPU run (a GPU draws its own masks fast)."""
    import torch
    return not torch.cuda.is_available()


@contextlib.contextmanager
def numpy_dropout(seed: int):
    """torch.nn.functional.dropout (which nn.Dropout and transformers' attention call) drawing from
    numpy's SFC64 seeded by `seed` while inside; torch's own again after. Nothing changes on a GPU."""
    import torch.nn.functional as F
    if not uses_numpy_masks():
        yield
        return
    before = F.dropout
    F.dropout = dropout_fn(np.random.Generator(np.random.SFC64(seed)))
    try:
        yield
    finally:
        F.dropout = before
