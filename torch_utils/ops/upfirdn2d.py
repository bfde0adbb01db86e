"""Pad, upsample, FIR-filter and downsample batches of 2D images (upfirdn2d) and its helpers.

Semantics follow stylegan2-ada-pytorch: for each channel, (1) upsample by inserting `up - 1` zeros after
every pixel, (2) pad with zeros (negative padding crops), (3) convolve with the FIR filter `f` keeping
only outputs whose footprint lies inside the padded image, (4) keep every `down`-th pixel.
`_upfirdn2d_ref` is the specification and the CPU path; `impl='cuda'` on CUDA tensors uses our kernels.
"""

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import custom_ops

_IMPLS = ("ref", "cuda")
_MAX_OUTER_TAPS = 8  # 1-D filters up to this length run as their 2-D outer product in the reference


def _parse_scaling(scaling, name="up/down"):
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    if not (isinstance(scaling, (list, tuple)) and len(scaling) == 2 and all(isinstance(s, int) for s in scaling)):
        raise ValueError(f"upfirdn2d: {name} must be an int or [x, y] ints, got {scaling!r}")
    sx, sy = scaling
    if sx < 1 or sy < 1:
        raise ValueError(f"upfirdn2d: {name} factors must be >= 1, got {scaling!r}")
    return sx, sy


def _parse_padding(padding):
    if isinstance(padding, int):
        padding = [padding, padding]
    if not (isinstance(padding, (list, tuple)) and all(isinstance(p, int) for p in padding)):
        raise ValueError(f"upfirdn2d: padding must be an int, [x, y] or [x0, x1, y0, y1] ints, got {padding!r}")
    if len(padding) == 2:
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    if len(padding) != 4:
        raise ValueError(f"upfirdn2d: padding must have 1, 2 or 4 entries, got {padding!r}")
    padx0, padx1, pady0, pady1 = padding
    return padx0, padx1, pady0, pady1


def _get_filter_size(f):
    """(width, height) of a filter; None is the 1x1 identity."""
    if f is None:
        return 1, 1
    if not (isinstance(f, torch.Tensor) and f.ndim in (1, 2)):
        raise ValueError("upfirdn2d: filter must be None or a 1-D (separable) or 2-D float32 tensor")
    fw = int(f.shape[-1])
    fh = int(f.shape[0])
    if fw < 1 or fh < 1:
        raise ValueError(f"upfirdn2d: empty filter of shape {list(f.shape)}")
    return fw, fh


def setup_filter(f, device=torch.device("cpu"), normalize=True, flip_filter=False, gain=1, separable=None):  # noqa: B008
    """Turn a list / numpy array / tensor / None into a float32 FIR filter for `upfirdn2d()`.

    Args:
        f:           [fh, fw] (non-separable), [taps] (separable), [] (impulse) or None (identity).
        device:      result device.
        normalize:   scale so that a constant signal keeps its magnitude (sum = 1).
        flip_filter: flip the filter.
        gain:        overall signal gain (applied as gain ** (ndim / 2) so that 1-D filters used twice give `gain`).
        separable:   return 1-D taps (True) or the 2-D outer product (False); None picks 1-D for >= 8 taps.

    Returns:
        float32 tensor [fh, fw] or [taps].
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: expected a scalar, 1-D or 2-D non-empty filter, got shape {list(f.shape)}")
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("setup_filter: a 2-D filter cannot be made separable")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="cuda"):
    """Pad, upsample, filter and downsample a batch of 2D images.

    Args:
        x:           float16/32/64 tensor [N, C, H, W].
        f:           float32 FIR filter [fh, fw] (non-separable), [taps] (separable), or None (identity).
        up:          int or [x, y] upsampling factor (zero insertion).
        down:        int or [x, y] downsampling factor (decimation).
        padding:     int, [x, y] or [x0, x1, y0, y1], relative to the upsampled image; negative crops.
        flip_filter: False = true convolution, True = correlation.
        gain:        overall scaling of the signal magnitude.
        impl:        'cuda' (our kernels on CUDA tensors, reference elsewhere) or 'ref'.

    Returns:
        tensor [N, C, (H * up + pady0 + pady1 - fh) // down + 1, (W * up + padx0 + padx1 - fw) // down + 1].
    """
    if impl not in _IMPLS:
        raise ValueError(f"upfirdn2d: impl must be one of {_IMPLS}, got {impl!r}")
    if impl == "cuda" and custom_ops.use_cuda(x) and custom_ops.get_plugin() is not None:
        cfg = _CudaCfg(_parse_scaling(up, "up"), _parse_scaling(down, "down"), _parse_padding(padding),
                       bool(flip_filter), float(gain))
        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        _get_filter_size(f)
        return _Upfirdn2dCuda.apply(x, f, cfg)
    return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def _depthwise(f2d, channels, dtype):
    """Per-channel weight [C, 1, fh, fw] for a grouped (depthwise) convolution."""
    return f2d.to(dtype)[None, None].expand(channels, 1, *f2d.shape)


def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Reference upfirdn2d with standard PyTorch ops (depthwise convolutions; autograd gives all gradients).

    Zero insertion is done implicitly by a stride-`up` transposed convolution (no work on the inserted zeros)
    and decimation by a stride-`down` convolution; separable filters run as two 1-D passes.
    """
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError(f"upfirdn2d: x must be a 4-D [N, C, H, W] tensor, got {type(x).__name__}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fw, fh = _get_filter_size(f)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    # Scale in the wider of the two dtypes (float64 tests stay exact); _depthwise casts to x's dtype.
    f = f.to(device=x.device, dtype=torch.promote_types(f.dtype, x.dtype)) * (gain ** (f.ndim / 2))
    if flip_filter:
        f = f.flip(list(range(f.ndim)))  # conv_transpose / conv below apply `f` as a true convolution
    if f.ndim == 1 and f.numel() <= _MAX_OUTER_TAPS:
        # Measured on CPU: one depthwise 2-D pass beats two 1-D passes for short filters.
        f = torch.outer(f, f)
    if f.ndim == 1:
        # Long separable filter: horizontal pass, then vertical pass, each a 1-D upfirdn.
        x = _upfirdn1d(x, f, upx, downx, padx0, padx1, axis=3)
        return _upfirdn1d(x, f, upy, downy, pady0, pady1, axis=2)
    return _upfirdn_2d_filter(x, f, (upx, upy), (downx, downy), (padx0, padx1, pady0, pady1))


def _upfirdn_2d_filter(x, f, up, down, pad):
    """Non-separable path; `f` is already flipped/scaled so that it is applied as a true convolution."""
    (upx, upy), (downx, downy), (padx0, padx1, pady0, pady1) = up, down, pad
    channels = x.shape[1]
    fh, fw = f.shape
    if upx > 1 or upy > 1:
        # Full convolution of the zero-inserted signal, then crop/pad it to the requested window.
        y = F.conv_transpose2d(x, _depthwise(f, channels, x.dtype), stride=(upy, upx), groups=channels)
        y = F.pad(y, [padx0 - fw + 1, upx + padx1 - fw, pady0 - fh + 1, upy + pady1 - fh])
        if downx > 1 or downy > 1:
            y = y[:, :, ::downy, ::downx]
        return y
    x = F.pad(x, [padx0, padx1, pady0, pady1])
    # conv2d is a correlation: flip to get the true convolution.
    return F.conv2d(x, _depthwise(f.flip([0, 1]), channels, x.dtype), stride=(downy, downx), groups=channels)


def _upfirdn1d(x, f, up, down, pad0, pad1, axis):
    """1-D upfirdn along `axis` (2 = rows/height, 3 = columns/width) with a true-convolution filter `f`."""
    channels = x.shape[1]
    taps = f.numel()
    shape = [taps, 1] if axis == 2 else [1, taps]
    stride = (up, 1) if axis == 2 else (1, up)
    if up > 1:
        y = F.conv_transpose2d(x, _depthwise(f.reshape(shape), channels, x.dtype), stride=stride, groups=channels)
        pads = [pad0 - taps + 1, up + pad1 - taps]
        y = F.pad(y, pads + [0, 0] if axis == 3 else [0, 0] + pads)
        if down > 1:
            y = y[:, :, ::down, :] if axis == 2 else y[:, :, :, ::down]
        return y
    x = F.pad(x, [pad0, pad1, 0, 0] if axis == 3 else [0, 0, pad0, pad1])
    stride = (down, 1) if axis == 2 else (1, down)
    w = _depthwise(f.flip([0]).reshape(shape), channels, x.dtype)
    return F.conv2d(x, w, stride=stride, groups=channels)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="cuda"):
    """Filter with `f`; by default the output has the input's size (padding on top of that, negative crops)."""
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    """Upsample by `up` with FIR filter `f`; by default the output is exactly `up` times the input size.

    The signal gain is multiplied by upx * upy to make up for the inserted zeros.
    """
    upx, upy = _parse_scaling(up, "up")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw + upx - 1) // 2,
        padx1 + (fw - upx) // 2,
        pady0 + (fh + upy - 1) // 2,
        pady1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    """Downsample by `down` with FIR filter `f`; by default the output is the input size divided by `down`."""
    downx, downy = _parse_scaling(down, "down")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw - downx + 1) // 2,
        padx1 + (fw - downx) // 2,
        pady0 + (fh - downy + 1) // 2,
        pady1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


# ---------------------------------------------------------------------------------------------------------
# CUDA path: one kernel launch per 2-D filter (two for separable filters); the gradient is upfirdn2d
# itself with the filter flipped, up and down swapped and the padding adjusted, so every order works.


class _CudaCfg(NamedTuple):
    up: tuple
    down: tuple
    pad: tuple  # (x0, x1, y0, y1)
    flip: bool
    gain: float


def _launch(x, f2d, up, down, pad, flip, gain):
    plugin = custom_ops.get_plugin()
    fmt = torch.channels_last if x.stride(1) == 1 and x.shape[1] > 1 else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    with custom_ops.device_stream(x.device) as stream:
        f2d = f2d.to(x.device, torch.float32).contiguous()
        return plugin.upfirdn2d(x, f2d, up[0], up[1], down[0], down[1], *pad, flip, gain, stream)


class _Upfirdn2dCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, cfg):
        if f.ndim == 2:
            y = _launch(x, f, cfg.up, cfg.down, cfg.pad, cfg.flip, cfg.gain)
        else:
            px0, px1, py0, py1 = cfg.pad
            g = float(np.sqrt(cfg.gain))
            y = _launch(x, f[None, :], (cfg.up[0], 1), (cfg.down[0], 1), (px0, px1, 0, 0), cfg.flip, g)
            y = _launch(y, f[:, None], (1, cfg.up[1]), (1, cfg.down[1]), (0, 0, py0, py1), cfg.flip, g)
        ctx.save_for_backward(f)
        ctx.cfg, ctx.x_shape = cfg, x.shape
        return y

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        cfg = ctx.cfg
        _, _, ih, iw = ctx.x_shape
        _, _, oh, ow = dy.shape
        fw, fh = _get_filter_size(f)
        (upx, upy), (downx, downy), (px0, _, py0, _) = cfg.up, cfg.down, cfg.pad
        pad = (
            fw - px0 - 1,
            iw * upx - ow * downx + px0 - upx + 1,
            fh - py0 - 1,
            ih * upy - oh * downy + py0 - upy + 1,
        )
        dx = None
        if ctx.needs_input_grad[0]:
            back = _CudaCfg(cfg.down, cfg.up, pad, not cfg.flip, cfg.gain)
            dx = _Upfirdn2dCuda.apply(dy, f, back)
        return dx, None, None
