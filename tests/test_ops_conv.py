"""conv2d_resample against upsample -> conv2d -> downsample spelled out; modulated_conv2d against a per-sample loop."""

import pytest
import torch
import torch.nn.functional as F
from test_ops_upfirdn2d import naive_upfirdn2d  # the naive definition lives with the upfirdn2d tests

from torch_utils.ops import upfirdn2d as U
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.modulated_conv2d import modulated_conv2d


def naive_conv2d_resample(x, w, f, up, down, pad, groups, flip_weight, flip_filter):
    """Zero-insert + filter (gain up^2), pad, plain conv2d, filter + decimate -- each step separately."""
    fw = fh = f.shape[-1]
    px0, px1, py0, py1 = pad
    if up > 1:  # StyleGAN2: the filter's own padding keeps the output `up` times the input
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    if up > 1:
        x = naive_upfirdn2d(x, f, (up, up), pad=(px0, px1, py0, py1), flip=flip_filter, gain=up * up)
    else:
        x = F.pad(x, [px0, px1, py0, py1]) if min(px0, px1, py0, py1) >= 0 else naive_upfirdn2d(
            x, torch.ones(1, 1), pad=(px0, px1, py0, py1))
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = naive_upfirdn2d(x, f, down=(down, down), flip=flip_filter)
    return x


CASES = [
    # (kernel, up, down, padding, groups, flip_weight, flip_filter)
    (3, 1, 1, 1, 1, True, False),
    (3, 1, 1, [0, 2, 1, 0], 1, False, False),
    (3, 2, 1, 1, 1, False, False),
    (3, 2, 1, 1, 2, True, True),
    (3, 1, 2, 1, 1, True, False),
    (1, 2, 1, 0, 1, True, False),
    (1, 1, 2, 0, 2, False, True),
    (3, 2, 2, 1, 1, True, False),
    (4, 1, 1, [-1, 1, 2, 0], 1, True, False),
    (3, 4, 1, 0, 1, False, False),
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_conv2d_resample_matches_naive(case):
    k, up, down, pad, groups, flip_weight, flip_filter = case
    gen = torch.Generator().manual_seed(len(str(case)))
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, generator=gen)
    w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64, generator=gen)
    f = U.setup_filter([1, 3, 3, 1]).double()
    y = conv2d_resample(x, w, f=f, up=up, down=down, padding=pad, groups=groups, flip_weight=flip_weight,
                        flip_filter=flip_filter)
    pad4 = U._parse_padding(pad)
    ref = naive_conv2d_resample(x, w, f, up, down, pad4, groups, flip_weight, flip_filter)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-9, atol=1e-9)


def test_same_padding_output_sizes():
    x = torch.randn(1, 3, 8, 10)
    w = torch.randn(5, 3, 3, 3)
    f = U.setup_filter([1, 3, 3, 1])
    assert conv2d_resample(x, w, f, up=2, padding=1).shape == (1, 5, 16, 20)
    assert conv2d_resample(x, w, f, down=2, padding=1).shape == (1, 5, 4, 5)
    assert conv2d_resample(x, w, padding=1).shape == (1, 5, 8, 10)
    with pytest.raises(ValueError, match="resample filter"):
        conv2d_resample(x, w, None, up=2)


def naive_modconv(x, weight, styles, noise, up, pad, f, demodulate, flip_weight):
    out = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        out.append(conv2d_resample(x[i:i + 1], w, f=f, up=up, padding=pad, flip_weight=flip_weight))
    y = torch.cat(out)
    return y + noise if noise is not None else y


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up,demodulate,use_noise", [(1, True, True), (2, True, False), (1, False, True),
                                                     (2, False, False)])
def test_modulated_conv2d_matches_per_sample_loop(fused, up, demodulate, use_noise):
    gen = torch.Generator().manual_seed(up + 2 * demodulate)
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64, generator=gen)
    weight = torch.randn(7, 4, 3, 3, dtype=torch.float64, generator=gen)
    styles = torch.randn(3, 4, dtype=torch.float64, generator=gen) + 1
    f = U.setup_filter([1, 3, 3, 1]).double()
    noise = torch.randn(3, 1, 6 * up, 5 * up, dtype=torch.float64, generator=gen) if use_noise else None
    flip_weight = up == 1  # as in StyleGAN2 synthesis layers
    y = modulated_conv2d(x, weight, styles, noise=noise, up=up, padding=1, resample_filter=f, demodulate=demodulate,
                         flip_weight=flip_weight, fused_modconv=fused)
    ref = naive_modconv(x, weight, styles, noise, up, 1, f, demodulate, flip_weight)
    torch.testing.assert_close(y, ref, rtol=1e-9, atol=1e-9)


def test_demodulation_normalises_output_scale():
    # With unit-variance i.i.d. input, demodulated outputs have ~unit variance whatever the style magnitude.
    x = torch.randn(2, 64, 16, 16, dtype=torch.float64)
    weight = torch.randn(32, 64, 3, 3, dtype=torch.float64)
    styles = torch.rand(2, 64, dtype=torch.float64) * 50
    y = modulated_conv2d(x, weight, styles, padding=1)[:, :, 1:-1, 1:-1]
    assert 0.8 < float(y.std()) < 1.2


def test_modulated_conv2d_gradgrad():
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    f = U.setup_filter([1, 3, 3, 1]).double()
    fn = lambda a, b, c: modulated_conv2d(a, b, c, up=2, padding=1, resample_filter=f, flip_weight=False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, weight, styles), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, weight, styles), fast_mode=True)
