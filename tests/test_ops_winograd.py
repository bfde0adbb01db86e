"""Tests of the Winograd F(4x4, 3x3) and F(2x2, 3x3) convolutions used by the fast CPU inference path."""

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import winograd


@pytest.mark.parametrize("n,c_in,c_out,h,w,bias", [(1, 8, 8, 16, 16, True), (2, 5, 7, 13, 10, False),
                                                   (3, 16, 4, 4, 4, True), (1, 3, 6, 1, 9, True),
                                                   (1, 64, 64, 32, 32, False)])
@pytest.mark.parametrize("tile", winograd.TILES)
def test_matches_conv2d(n, c_in, c_out, h, w, bias, tile):
    gen = torch.Generator().manual_seed(h * w + c_in)
    x = torch.randn(n, c_in, h, w, generator=gen)
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen) / (9 * c_in) ** 0.5
    b = torch.randn(c_out, generator=gen) if bias else None
    want = F.conv2d(x.double(), weight.double(), None if b is None else b.double(), padding=1)
    for layout in (torch.contiguous_format, torch.channels_last):
        got = winograd.conv3x3(x.contiguous(memory_format=layout), winograd.transform_weight(weight, tile), b)
        assert got.shape == want.shape and got.dtype == torch.float32
        # F(4x4): ~4x a direct float32 convolution's rounding error (the module docstring); values are O(1).
        assert (got.double() - want).abs().max().item() < (1e-4 if tile == 4 else 2e-5)


def test_f2_is_more_accurate_than_f4_on_a_wide_layer():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 16, 16, generator=gen)
    weight = torch.randn(256, 256, 3, 3, generator=gen) / (9 * 256) ** 0.5
    want = F.conv2d(x.double(), weight.double(), padding=1)
    err = {t: (winograd.conv3x3(x, winograd.transform_weight(weight, t)).double() - want).abs().max().item()
           for t in winograd.TILES}
    assert 0 < err[2] < err[4] / 2


@pytest.mark.parametrize("tile", winograd.TILES)
def test_output_is_channels_last_for_whole_tiles(tile):
    x = torch.randn(1, 4, 8, 12)
    y = winograd.conv3x3(x, winograd.transform_weight(torch.randn(6, 4, 3, 3), tile))
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_weight_shape_mismatch_is_caught():
    assert winograd.transform_weight(torch.randn(6, 4, 3, 3), 2).shape == (16, 4, 6)
    with pytest.raises(ValueError, match="tile must be one of"):
        winograd.transform_weight(torch.randn(6, 4, 3, 3), 3)
    u = winograd.transform_weight(torch.randn(6, 4, 3, 3))
    assert u.shape == (36, 4, 6)
    with pytest.raises(AssertionError):
        winograd.conv3x3(torch.randn(1, 5, 8, 8), u)
    with pytest.raises(AssertionError):
        winograd.transform_weight(torch.randn(6, 4, 5, 5))
