"""upfirdn2d reference against a naive zero-insertion + pad/crop + conv2d + stride definition, and its gradients."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import upfirdn2d as U


def naive_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip=False, gain=1.0):
    """The definition, step by step, in float64 on an [N*C, 1, H, W] view."""
    n, c, h, w = x.shape
    f = f.double()
    f2 = (f if f.ndim == 2 else torch.outer(f, f)) * gain
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    z = torch.zeros(n * c, 1, h * upy, w * upx, dtype=torch.float64)
    z[:, :, ::upy, ::upx] = x.reshape(n * c, 1, h, w).double()
    # Pad with zeros, then crop where the padding is negative.
    z = F.pad(z, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    z = z[:, :, max(-py0, 0): z.shape[2] - max(-py1, 0), max(-px0, 0): z.shape[3] - max(-px1, 0)]
    kernel = f2 if flip else f2.flip([0, 1])  # conv2d correlates; flip=False means a true convolution
    y = F.conv2d(z, kernel[None, None])
    y = y[:, :, ::downy, ::downx]
    return y.reshape(n, c, y.shape[2], y.shape[3])


FILTERS = {
    "box2": [1, 1],
    "binomial4": [1, 3, 3, 1],
    "odd3": [1, 2, 1],
    "sep8": [1, 2, 3, 4, 4, 3, 2, 1],
    "nonsep3x5": np.arange(1, 16, dtype=np.float32).reshape(3, 5),
}


def _filter(name, separable):
    f = FILTERS[name]
    if np.ndim(f) == 2:
        return U.setup_filter(f)
    return U.setup_filter(f, separable=separable)


@pytest.mark.parametrize("seed", range(12))
def test_ref_matches_naive_random(seed):
    rng = np.random.default_rng(seed)
    name = list(FILTERS)[seed % len(FILTERS)]
    f = _filter(name, separable=bool(seed % 2))
    up = [int(rng.choice([1, 2, 4])), int(rng.choice([1, 2, 4]))]
    down = [int(rng.choice([1, 2, 4])), int(rng.choice([1, 2]))]
    pad = [int(v) for v in rng.integers(-2, 4, size=4)]
    h, w = int(rng.integers(5, 12)), int(rng.integers(4, 13))  # odd and non-square sizes
    x = torch.from_numpy(rng.standard_normal((2, 3, h, w)))
    flip, gain = bool(rng.integers(2)), float(rng.choice([1.0, 0.5, 3.0]))
    y = U.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="ref")
    ref = naive_upfirdn2d(x, f, tuple(up), tuple(down), tuple(pad), flip, gain)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_padding_forms_agree_and_negative_crops():
    x = torch.randn(1, 2, 8, 6, dtype=torch.float64)
    f = U.setup_filter([1, 3, 3, 1]).double()
    a = U.upfirdn2d(x, f, padding=2, impl="ref")
    b = U.upfirdn2d(x, f, padding=[2, 2], impl="ref")
    c = U.upfirdn2d(x, f, padding=[2, 2, 2, 2], impl="ref")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    # Identity filter + negative padding is a plain crop.
    crop = U.upfirdn2d(x, None, padding=[-1, -2, -3, 0], impl="ref")
    torch.testing.assert_close(crop, x[:, :, 3:, 1:-2])


def test_impl_cuda_on_cpu_is_the_reference():
    x = torch.randn(2, 3, 7, 9)
    f = U.setup_filter([1, 3, 3, 1])
    for fn in (U.upsample2d, U.downsample2d, U.filter2d):
        torch.testing.assert_close(fn(x, f, impl="cuda"), fn(x, f, impl="ref"), rtol=0, atol=0)


def test_setup_filter():
    f = U.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    assert U.setup_filter([1] * 8).shape == (8,)  # >= 8 taps -> separable by default
    assert U.setup_filter(None).shape == (1, 1)
    g = U.setup_filter([1, 2, 3], normalize=False, flip_filter=True, gain=4, separable=True)
    torch.testing.assert_close(g, torch.tensor([6.0, 4.0, 2.0]))  # gain ** (ndim / 2) for a 1-D filter
    with pytest.raises(ValueError):
        U.setup_filter(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("name", ["binomial4", "odd3", "sep8"])
def test_resample_helpers_sizes_and_dc_gain(name):
    f = _filter(name, separable=None)
    x = torch.ones(1, 1, 12, 10, dtype=torch.float64)
    up = U.upsample2d(x, f.double(), impl="ref")
    down = U.downsample2d(x, f.double(), impl="ref")
    same = U.filter2d(x, f.double(), impl="ref")
    assert up.shape[2:] == (24, 20) and down.shape[2:] == (6, 5) and same.shape[2:] == (12, 10)
    # A normalised filter keeps a constant signal constant away from the borders (up: gain up**2 undoes the zeros).
    for y in (up, down, same):
        torch.testing.assert_close(y[:, :, 4:-4, 4:-4], torch.ones_like(y[:, :, 4:-4, 4:-4]))


def test_helper_padding_matches_stylegan2_conventions():
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    f = U.setup_filter([1, 3, 3, 1]).double()  # fw = fh = 4
    torch.testing.assert_close(U.upsample2d(x, f, impl="ref"),
                               naive_upfirdn2d(x, f, (2, 2), (1, 1), (2, 1, 2, 1), gain=4.0))
    torch.testing.assert_close(U.downsample2d(x, f, padding=1, impl="ref"),
                               naive_upfirdn2d(x, f, (1, 1), (2, 2), (2, 2, 2, 2)))
    torch.testing.assert_close(U.filter2d(x, f, impl="ref"), naive_upfirdn2d(x, f, pad=(2, 1, 2, 1)))


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="padding"):
        U.upfirdn2d(x, None, padding=[1, 2, 3])
    with pytest.raises(ValueError, match="up"):
        U.upfirdn2d(x, None, up=0)
    with pytest.raises(ValueError, match="impl"):
        U.upfirdn2d(x, None, impl="triton")


@pytest.mark.parametrize(
    "up,down,pad,sep",
    [(1, 1, [1, 2, 0, 1], False), (2, 1, [2, 1, 2, 1], True), (1, 2, [1, 1, -1, 2], False),
     ([2, 1], [1, 2], [-1, 2, 1, 0], False), (4, 2, [3, 2, 1, 0], True)],
)
def test_gradcheck_and_gradgradcheck(up, down, pad, sep):
    f = U.setup_filter([1, 3, 3, 1], separable=sep).double()
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)

    def fn(t):
        return U.upfirdn2d(t, f, up=up, down=down, padding=pad, gain=2.0, impl="ref")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
