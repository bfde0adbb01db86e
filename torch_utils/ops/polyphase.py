"""Stride-2 transposed 3x3 convolution as four stride-1 convolutions of the input, one per output phase, for CPU
inference.

conv_transpose2d(x, w, stride=2) scatters each input pixel through the 3x3 kernel onto a grid twice as fine
(output 2H+1). Output rows 2m take kernel rows 2 and 0 (from input rows m-1 and m), rows 2m+1 kernel row 1 (input
row m); columns alike. So the (even, even) outputs are a 2x2 convolution of the input, (even, odd) a 2x1, (odd,
even) a 1x2 and (odd, odd) a 1x1: the same 9 multiplies per input pixel, but as ordinary convolutions, which
oneDNN runs with its fast kernels where its transposed convolution falls back to a slower one (seen on AVX2:
1.6-1.9x slower than these four plus their interleaving at 128-256 px). The result equals conv_transpose2d to
float32 rounding (the same products, summed in another order).
"""

import torch
import torch.nn.functional as F

_CL = torch.channels_last
_EVEN, _ODD = [2, 0], [1]  # kernel taps read by even and odd output positions, in input order (rows m-1, m)


def phase_weights(w):
    """conv_transpose2d weight [C_in, C_out, 3, 3] -> the four conv2d weights [C_out, C_in, kh, kw] of
    conv_transpose2d_phases(), channels_last; compute once per weight."""
    assert w.ndim == 4 and w.shape[2:] == (3, 3), w.shape
    wc = w.transpose(0, 1)
    return tuple(wc[:, :, rows][:, :, :, cols].contiguous(memory_format=_CL)
                 for rows in (_EVEN, _ODD) for cols in (_EVEN, _ODD))


def conv_transpose2d_phases(x, phases):
    """conv_transpose2d(x, w, stride=2) for x [N, C_in, H, W] and phases = phase_weights(w): [N, C_out, 2H+1,
    2W+1], channels_last."""
    ee, eo, oe, oo = phases
    n, c_in, h, w = x.shape
    assert ee.shape[1] == c_in, (ee.shape, x.shape)
    y = torch.empty([n, ee.shape[0], 2 * h + 1, 2 * w + 1], dtype=x.dtype, device=x.device,
                    memory_format=_CL)
    y[:, :, 0::2, 0::2] = F.conv2d(x, ee, padding=1)
    y[:, :, 0::2, 1::2] = F.conv2d(x, eo, padding=(1, 0))
    y[:, :, 1::2, 0::2] = F.conv2d(x, oe, padding=(0, 1))
    y[:, :, 1::2, 1::2] = F.conv2d(x, oo)
    return y
