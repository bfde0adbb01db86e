"""2D convolution fused with FIR up/downsampling (conv2d_resample), choosing the cheapest equivalent op order."""

import torch
import torch.nn.functional as F

from torch_utils.ops import upfirdn2d
from torch_utils.ops.upfirdn2d import _get_filter_size, _parse_padding


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d / conv_transpose2d; flip_weight=True is a correlation (what conv2d computes), False a convolution."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _resample_padding(fw, fh, up, down, padding):
    """Padding (x0, x1, y0, y1) of the fused op: the user's plus what keeps the output `up / down` times the input."""
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return px0, px1, py0, py1


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """Convolve `x` with `w`, optionally upsampling before / downsampling after with FIR filter `f`.

    Equivalent to upsample2d(x, f, up) -> pad -> conv2d(w) -> downsample2d(f, down) (StyleGAN2 semantics:
    padding is relative to the upsampled image; the filter's own padding is added so that the output is
    `up / down` times the input for a 'same' convolution), but run as transposed / strided convolutions.

    Args:
        x:           [N, C_in, H, W] input.
        w:           [C_out, C_in // groups, kh, kw] weight.
        f:           FIR filter from `upfirdn2d.setup_filter()`, or None (only allowed when up == down == 1).
        up, down:    integer resampling factors (>= 1).
        padding:     int, [x, y] or [x0, x1, y0, y1] zero padding.
        groups:      grouped convolution.
        flip_weight: False = true convolution with w, True = correlation (what F.conv2d computes).
        flip_filter: False = true convolution with f, True = correlation.

    Returns:
        [N, C_out, H', W'].
    """
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError("conv2d_resample: x must be a 4-D [N, C, H, W] tensor")
    if not (isinstance(w, torch.Tensor) and w.ndim == 4 and w.dtype == x.dtype):
        raise ValueError("conv2d_resample: w must be a 4-D [C_out, C_in/groups, kh, kw] tensor of x's dtype")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"conv2d_resample: up and down must be ints >= 1, got {up!r}, {down!r}")
    if f is None and (up > 1 or down > 1):
        raise ValueError("conv2d_resample: a resample filter f is required when up or down > 1")
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = _get_filter_size(f)
    px0, px1, py0, py1 = _resample_padding(fw, fh, up, down, padding)

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        # 1x1 weight: filter and decimate first, the convolution then sees 1/down^2 of the pixels.
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        # 1x1 weight: convolve at the low resolution, then upsample.
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:
        # Filter at full resolution, then a strided convolution does the decimation.
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        return _conv_up(x, w, f, up, down, (px0, px1, py0, py1), groups, flip_weight, flip_filter)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    # Asymmetric or negative padding: pad/crop explicitly, then a plain convolution.
    x = upfirdn2d.upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv(x, w, groups=groups, flip_weight=flip_weight)


def _conv_up(x, w, f, up, down, pad, groups, flip_weight, flip_filter):
    """Upsampling as a stride-`up` transposed convolution (zero insertion for free), then the FIR filter."""
    px0, px1, py0, py1 = pad
    out_channels, in_per_group, kh, kw = w.shape
    # conv_transpose2d wants [C_in, C_out // groups, kh, kw].
    if groups == 1:
        w = w.transpose(0, 1)
    else:
        w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    # The transposed convolution already produces the kernel's full support: remove it from the padding.
    px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    # A transposed convolution is a true convolution, hence the inverted flip.
    x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
    x = upfirdn2d.upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2,
                            flip_filter=flip_filter)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
