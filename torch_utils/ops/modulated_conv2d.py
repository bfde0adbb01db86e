"""StyleGAN2 modulated convolution: per-sample style scaling of the weight, demodulation, noise, resampling."""

import numpy as np
import torch

from torch_utils.ops.conv2d_resample import conv2d_resample


def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None, demodulate=True,
                     flip_weight=True, fused_modconv=True):
    """Convolve each sample with `weight` scaled per input channel by its style (and demodulated).

    Args:
        x:               [N, C_in, H, W] input.
        weight:          [C_out, C_in, kh, kw] shared weight.
        styles:          [N, C_in] per-sample modulation.
        noise:           None or a tensor broadcastable to the output ([N, 1, H', W'] or [1, 1, H', W']), added
                         after demodulation.
        up, down:        resampling factors, run through `conv2d_resample` with `resample_filter`.
        padding:         convolution padding (relative to the upsampled image).
        resample_filter: FIR filter from `upfirdn2d.setup_filter()` (needed when up or down > 1).
        demodulate:      normalise each output channel of the modulated weight to unit L2 norm.
        flip_weight:     see `conv2d_resample` (False for upsampling layers in StyleGAN2).
        fused_modconv:   True: one grouped convolution with per-sample weights; False: scale activations before
                         and after a shared-weight convolution (same result, cheaper for large batches).

    Returns:
        [N, C_out, H', W'].
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"modulated_conv2d: x {list(x.shape)} does not match weight {list(weight.shape)}")
    if styles.shape != (batch_size, in_channels):
        raise ValueError(f"modulated_conv2d: styles must be [{batch_size}, {in_channels}], got {list(styles.shape)}")

    if x.dtype == torch.float16 and demodulate:
        # Rescale before the products so fp16 does not overflow; demodulation cancels the scale exactly.
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [N, C_out, C_in, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, C_out]

    conv_kwargs = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), **conv_kwargs)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    if demodulate:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    # The batch becomes the group dimension: one convolution with N different weights.
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), groups=batch_size, **conv_kwargs)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
