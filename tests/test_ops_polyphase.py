"""Tests of the polyphase stride-2 transposed 3x3 convolution used by the fast CPU inference path."""

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import polyphase


def _naive_transposed(x, w):
    """conv_transpose2d(x, w, stride=2) by its definition: zero insertion, padding 2, a flipped-kernel conv2d."""
    n, c, h, wd = x.shape
    up = torch.zeros(n, c, 2 * h - 1, 2 * wd - 1, dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    return F.conv2d(F.pad(up, (2, 2, 2, 2)), w.transpose(0, 1).flip([2, 3]))


@pytest.mark.parametrize("n,c_in,c_out,h,w", [(1, 4, 6, 5, 7), (2, 8, 3, 1, 1), (1, 16, 16, 8, 8)])
def test_matches_the_transposed_convolution(n, c_in, c_out, h, w):
    gen = torch.Generator().manual_seed(c_in * h + w)
    x = torch.randn(n, c_in, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c_in, c_out, 3, 3, generator=gen, dtype=torch.float64)
    want = _naive_transposed(x, weight)
    assert torch.allclose(F.conv_transpose2d(x, weight, stride=2), want)  # the definition above is torch's
    for layout in (torch.contiguous_format, torch.channels_last):
        got = polyphase.conv_transpose2d_phases(x.contiguous(memory_format=layout), polyphase.phase_weights(weight))
        assert got.shape == (n, c_out, 2 * h + 1, 2 * w + 1) and got.is_contiguous(memory_format=torch.channels_last)
        assert (got - want).abs().max().item() < 1e-12


def test_phase_weights_hold_each_tap_once():
    w = torch.arange(2 * 3 * 9, dtype=torch.float32).reshape(2, 3, 3, 3)
    phases = polyphase.phase_weights(w)
    assert [tuple(p.shape) for p in phases] == [(3, 2, 2, 2), (3, 2, 2, 1), (3, 2, 1, 2), (3, 2, 1, 1)]
    taps = torch.cat([p.flatten() for p in phases]).sort().values
    assert torch.equal(taps, w.flatten().sort().values)
    with pytest.raises(AssertionError):
        polyphase.phase_weights(torch.randn(2, 3, 4, 4))
