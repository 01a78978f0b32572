"""Dropout masks drawn by numpy: inverted dropout at the asked rate, seeded, differentiable, and only
inside the context (torch's own before and after)."""
import numpy as np
import pytest
import torch

from fewshot.dropout_masks import dropout_fn, numpy_dropout


def _fn(seed):
    return dropout_fn(np.random.Generator(np.random.SFC64(seed)))


def test_masks_keep_the_asked_share_and_scale_what_they_keep_as_torch_does():
    x = torch.randn(200_000)
    y = _fn(0)(x, 0.1, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.004
    assert torch.equal(y[kept], x[kept] * torch.ones(1).div_(0.9))
    assert torch.equal(_fn(0)(x, 0.1, False), x) and torch.equal(_fn(0)(x, 0.0, True), x)
    with pytest.raises(ValueError):
        _fn(0)(x, 1.5, True)


def test_one_seed_one_mask_another_seed_another_and_gradients_flow_through_the_kept():
    x = torch.randn(4, 8, 16, dtype=torch.bfloat16, requires_grad=True)
    a, b, c = _fn(3)(x, 0.25, True), _fn(3)(x, 0.25, True), _fn(4)(x, 0.25, True)
    assert torch.equal(a, b) and not torch.equal(a != 0, c != 0)
    a.float().sum().backward()
    assert torch.equal(x.grad != 0, a != 0) and x.grad.dtype == torch.bfloat16


def test_the_context_swaps_functional_dropout_and_puts_torchs_back(monkeypatch):
    import fewshot.dropout_masks as dm
    monkeypatch.setattr(dm, "uses_numpy_masks", lambda: True)
    before = torch.nn.functional.dropout
    layer = torch.nn.Dropout(0.5).train()
    x = torch.ones(1000)
    with numpy_dropout(7):
        inside = layer(x)
    assert torch.nn.functional.dropout is before
    assert torch.equal(inside, _fn(7)(x, 0.5, True))  # nn.Dropout drew from the seeded numpy generator
    with pytest.raises(RuntimeError):
        with numpy_dropout(7):
            raise RuntimeError("a failed run")
    assert torch.nn.functional.dropout is before
