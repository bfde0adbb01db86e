"""The co-modulated CoModGAN generator (mapping, encoder, synthesis) and its residual discriminator.

Architecture (Zhao et al., ICLR 2021, official TF `G_main` / `G_mapping` / `G_synthesis_co_mod_gan` /
`D_co_mod_gan`), with `nf(stage) = clip(channel_base / 2**stage, 1, channel_max)` and R = img_resolution:

- Mapping: z -> normalize 2nd moment -> 8 x (dense 512 + lrelu), lr multiplier 0.01 -> w, broadcast to
  `num_ws = 2*log2(R) - 2` copies; `w_avg` tracked with beta 0.995 for truncation.
- Encoder: input `concat([mask - 0.5, img * mask])`; fromrgb 1x1 at R; for each resolution r from R down to 8:
  conv 3x3 (output kept as the skip feature of r), conv 3x3 stride 2 with the [1, 3, 3, 1] low-pass filter.
  At 4x4: conv 3x3 (kept as the 4x4 feature), flatten, dense to 2*nf(1) = the global code, dropout 0.5.
- Synthesis ('skip' architecture): 4x4 = dense(global code) reshaped to nf(1)x4x4 + encoder 4x4 feature,
  one modulated conv, toRGB. Each r >= 8: modulated conv 3x3 with 2x upsampling, + encoder feature of r,
  modulated conv 3x3 (noise with a learned strength after each conv), toRGB added to the upsampled image.
  Every style comes from an affine layer on `concat([w_i, global_code])` (co-modulation). The paper's
  ablations (official `style_mod` / `cond_mod` of G_synthesis_co_mod_gan, run_training.py --disable-style-mod /
  --disable-cond-mod) drop one part of that input: `style_mod=False` modulates by the global code alone (the
  mapping network is still built, as G_main builds it, but its w reaches nothing), `cond_mod=False` by w alone.
  Each affine's input width shrinks accordingly; at least one part stays (see docs/ablations.md).
- Output: `img * mask + raw * (1 - mask)` (mask: 1 = known pixel, 0 = hole).
- Discriminator: input `concat([mask - 0.5, img])`, fromrgb 1x1, residual blocks down to 8x8, minibatch
  stddev (group 4, 1 feature), conv 3x3, dense nf(0), dense to one logit.

Trainable parameters at 512 (3 channels, defaults), as in the official networks: G 79,792,231 = mapping 2,101,248
+ encoder 31,952,000 + synthesis 45,738,983 (noise strengths included; buffers noise_const, w_avg excluded);
D 28,982,913. Without style mod G has 75,204,711, without cond mod 70,617,191 (tests/test_ablations.py).

Every layer uses the equalized learning rate: weights are stored N(0, 1/lr_multiplier) and multiplied at run
time by `lr_multiplier / sqrt(fan_in)`; biases by `lr_multiplier`. Mixed precision: the blocks of the highest
`num_fp16_res` resolutions run in float16 with activations clamped to +-conv_clamp, but only on CUDA; on
the CPU everything is float32 and unclamped (then the arithmetic is that of the official TF code).

Inference: these modules are the reference, what training differentiates. A Generator may also carry a fast
path (`G.fast_path`, attached by `inference.fast_path.attach(G)`; `inference.load_generator` does it), which
`Generator.forward` runs instead of the encoder + synthesis modules when the fast path says it applies (eval
mode, no autograd, float32 CPU tensors, no module hooks). It gives the same arithmetic to float32 rounding.
`G.set_impl(name)` / `G(..., impl=name)` choose among 'ref' and the fast path's implementations. The fast path
lives in the inference package, above this one, so it is handed in rather than imported.

Dropout on the global code: always active in training mode. In eval mode the `dropout` keyword of
`Generator.forward` chooses; the default is off (deterministic completions). The official TF code applies
`tf.nn.dropout` unconditionally, i.e. also at inference, which adds randomness to every completion;
pass `dropout=True` to reproduce that.

Parameter naming (one-to-one with the official TF variables; TF dense weights are [in, out] and conv weights
[k, k, in, out], ours [out, in] and [out, in, k, k], so copy with a transpose; R = resolution, e.g. 512):

    TF variable                                  ours (state_dict key)
    G_mapping/Dense{i}/{weight,bias}             mapping.fc{i}.{weight,bias}                 i = 0..7
    G/dlatent_avg                                mapping.w_avg                               (buffer)
    G_synthesis/E_{R}x{R}/FromRGB/*              encoder.b{R}.fromrgb.*                      (top R only)
    G_synthesis/E_{R}x{R}/Conv0/*                encoder.b{R}.conv0.*
    G_synthesis/E_{R}x{R}/Conv1_down/*           encoder.b{R}.conv1.*
    G_synthesis/E_4x4/Conv/*                     encoder.b4.conv.*
    G_synthesis/E_4x4/Dense0/*                   encoder.b4.fc.*
    G_synthesis/G_4x4/Dense/*                    synthesis.b4.fc.*
    G_synthesis/G_4x4/Conv/<L>                   synthesis.b4.conv.<L>
    G_synthesis/G_{R}x{R}/Conv0_up/<L>           synthesis.b{R}.conv0.<L>    (weight also flipped in k, k)
    G_synthesis/G_{R}x{R}/Conv1/<L>              synthesis.b{R}.conv1.<L>
    G_synthesis/G_{R}x{R}/ToRGB/<T>              synthesis.b{R}.torgb.<T>                    (also b4)
    G_synthesis/noise{i} [1, 1, r, r]            <layer>.noise_const [r, r]   (buffer; layer with ws_index i)
      where <L>: weight, bias, mod_weight -> affine.weight, mod_bias -> affine.bias, noise_strength
      and   <T>: weight, bias, mod_weight -> affine.weight, mod_bias -> affine.bias
    D: {R}x{R}/FromRGB/*                         b{R}.fromrgb.*                              (top R only)
    D: {R}x{R}/Conv0/*, Conv1_down/*, Skip/*     b{R}.conv0.*, b{R}.conv1.*, b{R}.skip.weight (no bias)
    D: 4x4/MinibatchStddev                       b4.mbstd                                    (no parameters)
    D: 4x4/Conv/*, 4x4/Dense0/*, Output/*        b4.conv.*, b4.fc.*, b4.out.*

Semantics match TF so the copy is plain: `affine.bias` is initialised to 0 and 1 is added at run time (TF's
`mod_bias + 1`); `noise_strength` starts at 0. The only flip is Conv0_up: TF's `upsample_conv_2d` flips the
kernel before its transposed convolution, ours runs the transposed convolution on the stored kernel.
Layer `ws_index` i (synthesis) is the TF `layer_idx`/dlatent index: b4.conv 0, b4.torgb 1, b{2^r}.conv0 2r-5,
b{2^r}.conv1 2r-4, b{2^r}.torgb 2r-3.
"""

import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dnnlib import UserError
from torch_utils.misc import assert_mask_convention
from torch_utils.ops import bias_act, upfirdn2d
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.modulated_conv2d import modulated_conv2d

MIN_RESOLUTION = 32
MAX_RESOLUTION = 1024
RESAMPLE_FILTER = [1, 3, 3, 1]
_ACT_GAIN = {"linear": 1.0, "lrelu": math.sqrt(2)}  # bias_act's default gains, needed when scaling them


class NetworkInputError(UserError, ValueError):
    """A bad constructor argument or forward input (resolution, channels, mask shape or convention)."""


# ----------------------------------------------------------------------------------------------------------------
# Helpers.


def check_resolution(resolution, name="img_resolution"):
    """Return log2(resolution); the architecture needs a power of two between 32 and 1024."""
    if not isinstance(resolution, (int, np.integer)) or isinstance(resolution, bool):
        raise NetworkInputError(f"{name}: must be an integer power of two, got {resolution!r}")
    log2 = int(resolution).bit_length() - 1
    if resolution != 2**log2 or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise NetworkInputError(
            f"{name}: must be a power of two between {MIN_RESOLUTION} and {MAX_RESOLUTION}, got {resolution}"
        )
    return log2


def channels_at(stage, channel_base, channel_max):
    """nf(stage) of the official code: feature maps of the layers at resolution 2**(stage + 1)."""
    return int(np.clip(int(channel_base / 2.0**stage), 1, channel_max))


def fp16_resolutions(log2, num_fp16_res):
    """Resolutions whose blocks may run in float16: the highest `num_fp16_res`, never below 8x8."""
    lowest = max(2 ** (log2 + 1 - num_fp16_res), 8) if num_fp16_res > 0 else 2 ** (log2 + 1)
    return [2**r for r in range(3, log2 + 1) if 2**r >= lowest]


def block_dtype(use_fp16, device):
    """The compute dtype of a block: float16 only where the block allows it and the device is CUDA."""
    return torch.float16 if use_fp16 and torch.device(device).type == "cuda" else torch.float32


def _clamp_for(dtype, conv_clamp):
    # The clamp only guards float16 against overflow; float32 blocks stay unclamped like the TF code.
    return conv_clamp if dtype == torch.float16 else None


def _check_constructor_args(img_resolution, img_channels, channel_base, channel_max, num_fp16_res):
    """Clear errors for the arguments shared by Generator and Discriminator; returns log2(img_resolution)."""
    log2 = check_resolution(img_resolution)
    for name, value, lowest in (("img_channels", img_channels, 1), ("channel_base", channel_base, 1),
                                ("channel_max", channel_max, 1), ("num_fp16_res", num_fp16_res, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lowest:
            raise NetworkInputError(f"{name}: must be an integer >= {lowest}, got {value!r}")
    return log2


def check_modulation(style_mod, cond_mod):
    """The modulation switches must be booleans with at least one on: the official code would build plain,
    undemodulated convolutions with neither, which is not the architecture (or an ablation) of the paper."""
    for name, value in (("style_mod", style_mod), ("cond_mod", cond_mod)):
        if not isinstance(value, (bool, np.bool_)):
            raise NetworkInputError(f"{name}: must be True or False, got {value!r}")
    if not (style_mod or cond_mod):
        raise NetworkInputError("style_mod and cond_mod are both off: every modulated layer needs w (style_mod) or "
                                "the global code (cond_mod), or both; switch at least one on")


def _check_image_and_mask(img, mask, img_channels, img_resolution, who):
    """Clear errors for the tensors entering G or D: [N, C, R, R] image and a binary [N, 1, R, R] mask."""
    expected = [img_channels, img_resolution, img_resolution]
    if not isinstance(img, torch.Tensor) or img.ndim != 4 or list(img.shape[1:]) != expected:
        shape = list(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise NetworkInputError(f"{who}: img must be [N, {', '.join(map(str, expected))}], got {shape}")
    if not isinstance(mask, torch.Tensor) or list(mask.shape) != [img.shape[0], 1, img_resolution, img_resolution]:
        shape = list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise NetworkInputError(
            f"{who}: mask must be [{img.shape[0]}, 1, {img_resolution}, {img_resolution}] to match img, got {shape}"
        )
    try:
        assert_mask_convention(mask, f"{who}: mask")
    except ValueError as err:
        raise NetworkInputError(str(err)) from None


# ----------------------------------------------------------------------------------------------------------------
# Layers.


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate; weight [out, in]."""

    def __init__(
        self,
        in_features,  # Input width.
        out_features,  # Output width.
        bias=True,  # Add a learned bias?
        activation="linear",  # 'linear' or 'lrelu'.
        lr_multiplier=1.0,  # Learning-rate multiplier (0.01 in the mapping network).
        bias_init=0.0,  # Initial bias value.
    ):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate, optional 2x up/down-sampling (low-pass filtered) and bias+act."""

    def __init__(
        self,
        in_channels,  # Input channels.
        out_channels,  # Output channels.
        kernel_size,  # Odd kernel width.
        bias=True,  # Add a learned bias?
        activation="linear",  # 'linear' or 'lrelu'.
        down=1,  # Downsampling factor (1 or 2).
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.activation, self.down, self.padding = activation, down, kernel_size // 2
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(RESAMPLE_FILTER), persistent=False)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x, gain=1.0, clamp=None):
        w = self.weight.to(x.dtype) * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, down=self.down, padding=self.padding, flip_weight=True)
        b = None if self.bias is None else self.bias.to(x.dtype)
        act_gain = _ACT_GAIN[self.activation] * gain
        act_clamp = None if clamp is None else clamp * gain
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return f"in={self.in_channels}, out={self.out_channels}, k={self.kernel_size}, down={self.down}"


class SynthesisLayer(nn.Module):
    """Co-modulated 3x3 convolution (optionally 2x upsampling), per-pixel noise, bias and lrelu."""

    def __init__(
        self,
        in_channels,  # Input channels.
        out_channels,  # Output channels.
        mod_dim,  # Width of the modulation vector concat([w, global_code]).
        resolution,  # Output resolution (for the constant noise).
        ws_index,  # Which w of ws this layer reads (TF layer_idx).
        up=1,  # Upsampling factor (1 or 2).
        kernel_size=3,  # Odd kernel width.
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.ws_index, self.up, self.padding = ws_index, up, kernel_size // 2
        self.affine = FullyConnectedLayer(mod_dim, in_channels)
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(RESAMPLE_FILTER), persistent=False)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, mod, noise_mode="random", fused_modconv=True, clamp=None):
        styles = self.affine(mod) + 1  # TF: mod_bias + 1, so a zero bias starts as the identity style
        noise = None
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            noise = noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            noise = (self.noise_const * self.noise_strength).to(x.dtype)
        w = self.weight * self.weight_gain
        # flip_weight=False on the transposed (up) path is what makes it equal to TF's flipped-kernel transpose.
        x = modulated_conv2d(
            x, w, styles, noise=noise, up=self.up, padding=self.padding, resample_filter=self.resample_filter,
            flip_weight=(self.up == 1), fused_modconv=fused_modconv,
        )
        return bias_act.bias_act(x, self.bias.to(x.dtype), act="lrelu", clamp=clamp)

    def extra_repr(self):
        return f"in={self.in_channels}, out={self.out_channels}, res={self.resolution}, up={self.up}, w={self.ws_index}"


class ToRGBLayer(nn.Module):
    """Co-modulated 1x1 convolution to image channels, without demodulation; linear."""

    def __init__(self, in_channels, out_channels, mod_dim, ws_index):
        super().__init__()
        self.in_channels, self.out_channels, self.ws_index = in_channels, out_channels, ws_index
        self.affine = FullyConnectedLayer(mod_dim, in_channels)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, mod, fused_modconv=True, clamp=None):
        styles = self.affine(mod) + 1
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=clamp)

    def extra_repr(self):
        return f"in={self.in_channels}, out={self.out_channels}, w={self.ws_index}"


class MinibatchStdLayer(nn.Module):
    """Appends the mean stddev over groups of `group_size` samples as extra feature maps (TF semantics)."""

    def __init__(self, group_size=4, num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g:
            raise NetworkInputError(f"Discriminator: batch size {n} must be divisible by the mbstd group size {g}")
        f = self.num_channels
        # Sample i belongs to group i % (n // g), as in TF's reshape to [G, M, ...].
        y = x.float().reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [M, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


# ----------------------------------------------------------------------------------------------------------------
# Generator parts.


class MappingNetwork(nn.Module):
    """z -> w: 2nd-moment normalisation, 8 dense lrelu layers with lr multiplier 0.01, tracked w average."""

    def __init__(
        self,
        z_dim,  # Latent z width.
        w_dim,  # Intermediate w width.
        num_ws,  # Number of copies of w broadcast to the synthesis layers.
        num_layers=8,  # Dense layers.
        layer_features=512,  # Width of the hidden layers.
        lr_multiplier=0.01,  # Learning-rate multiplier.
        w_avg_beta=0.995,  # Decay of the tracked w average.
    ):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        widths = [z_dim] + [layer_features] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(widths[idx], widths[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            shape = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise NetworkInputError(f"mapping: z must be [N, {self.z_dim}], got {shape}")
        x = z.float()
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws = torch.cat([self.w_avg.lerp(ws[:, :cutoff], truncation_psi), ws[:, cutoff:]], dim=1)
        return ws


class EncoderBlock(nn.Module):
    """One encoder resolution r: [fromrgb], conv 3x3 (the skip feature of r), conv 3x3 stride 2."""

    def __init__(self, resolution, in_channels, out_channels, img_channels, is_top, use_fp16, conv_clamp):
        super().__init__()
        self.resolution, self.use_fp16, self.conv_clamp = resolution, use_fp16, conv_clamp
        if is_top:
            self.fromrgb = Conv2dLayer(img_channels + 1, in_channels, 1, activation="lrelu")
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=2)

    def _enter(self, x):
        """x in the block's dtype, through fromrgb at the top block; returns (x, clamp)."""
        dtype = block_dtype(self.use_fp16, x.device)
        clamp = _clamp_for(dtype, self.conv_clamp)
        x = x.to(dtype)
        if hasattr(self, "fromrgb"):
            x = self.fromrgb(x, clamp=clamp)
        return x, clamp

    def forward(self, x):
        x, clamp = self._enter(x)
        feat = self.conv0(x, clamp=clamp)
        return self.conv1(feat, clamp=clamp), feat


def _add_down_blocks(module, block_class, log2, img_channels, channel_base, channel_max, num_fp16_res, conv_clamp):
    """module.b{R}..b8 = block_class(r, nf(r-1) -> nf(r-2)), top first: the encoder's and D's shared layout."""
    fp16 = fp16_resolutions(log2, num_fp16_res)
    for r in range(log2, 2, -1):
        block = block_class(
            2**r, channels_at(r - 1, channel_base, channel_max), channels_at(r - 2, channel_base, channel_max),
            img_channels, is_top=(r == log2), use_fp16=(2**r in fp16), conv_clamp=conv_clamp,
        )
        setattr(module, f"b{2**r}", block)


class EncoderEpilogue(nn.Module):
    """4x4: conv 3x3 (the 4x4 feature), flatten, dense to the global code, dropout."""

    def __init__(self, in_channels, channels, code_dim, dropout_rate):
        super().__init__()
        self.dropout_rate = dropout_rate
        self.conv = Conv2dLayer(in_channels, channels, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(channels * 16, code_dim, activation="lrelu")

    def forward(self, x, dropout):
        feat = self.conv(x.float())
        code = self.fc(feat.flatten(1))
        return F.dropout(code, p=self.dropout_rate, training=dropout), feat


class Encoder(nn.Module):
    """Image + mask -> (global code [N, 2*nf(1)], skip features {resolution: [N, nf, r, r]})."""

    def __init__(self, img_resolution, img_channels, channel_base, channel_max, num_fp16_res, conv_clamp,
                 dropout_rate):
        super().__init__()
        log2 = check_resolution(img_resolution)
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.code_dim = 2 * channels_at(1, channel_base, channel_max)
        _add_down_blocks(self, EncoderBlock, log2, img_channels, channel_base, channel_max, num_fp16_res, conv_clamp)
        nf1 = channels_at(1, channel_base, channel_max)
        self.b4 = EncoderEpilogue(nf1, nf1, self.code_dim, dropout_rate)
        self.block_resolutions = [2**r for r in range(log2, 1, -1)]

    def forward(self, img, mask, dropout=False):
        x = torch.cat([mask - 0.5, img * mask], dim=1)
        feats = {}
        for res in self.block_resolutions[:-1]:
            x, feats[res] = getattr(self, f"b{res}")(x)
        code, feats[4] = self.b4(x, dropout)
        return code, feats


class SynthesisInput(nn.Module):
    """4x4: dense(global code) reshaped + encoder 4x4 feature, one modulated conv, toRGB."""

    def __init__(self, channels, code_dim, mod_dim, img_channels):
        super().__init__()
        self.channels = channels
        self.fc = FullyConnectedLayer(code_dim, channels * 16, activation="lrelu")
        self.conv = SynthesisLayer(channels, channels, mod_dim, resolution=4, ws_index=0)
        self.torgb = ToRGBLayer(channels, img_channels, mod_dim, ws_index=1)

    def forward(self, code, feat, mods, noise_mode, fused_modconv):
        x = self.fc(code).reshape(-1, self.channels, 4, 4) + feat.float()
        x = self.conv(x, mods[0], noise_mode=noise_mode, fused_modconv=fused_modconv)
        return x, self.torgb(x, mods[1], fused_modconv=fused_modconv).float()


class SynthesisBlock(nn.Module):
    """One resolution r >= 8: up-conv, + encoder feature, conv, toRGB added to the upsampled image."""

    def __init__(self, resolution, in_channels, out_channels, mod_dim, img_channels, use_fp16, conv_clamp):
        super().__init__()
        self.resolution, self.use_fp16, self.conv_clamp = resolution, use_fp16, conv_clamp
        r = int(math.log2(resolution))
        self.conv0 = SynthesisLayer(in_channels, out_channels, mod_dim, resolution, ws_index=2 * r - 5, up=2)
        self.conv1 = SynthesisLayer(out_channels, out_channels, mod_dim, resolution, ws_index=2 * r - 4)
        self.torgb = ToRGBLayer(out_channels, img_channels, mod_dim, ws_index=2 * r - 3)
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(RESAMPLE_FILTER), persistent=False)

    def forward(self, x, img, feat, mods, noise_mode, fused_modconv):
        dtype = block_dtype(self.use_fp16, x.device)
        clamp = _clamp_for(dtype, self.conv_clamp)
        # Grouped (fused) modconv in float16 is only a win for batch 1, as in stylegan2-ada-pytorch.
        fused = fused_modconv and (dtype == torch.float32 or x.shape[0] == 1)
        x = self.conv0(x.to(dtype), mods[0], noise_mode=noise_mode, fused_modconv=fused, clamp=clamp)
        x = x + feat.to(dtype)
        x = self.conv1(x, mods[1], noise_mode=noise_mode, fused_modconv=fused, clamp=clamp)
        img = upfirdn2d.upsample2d(img, self.resample_filter)
        img = img + self.torgb(x, mods[2], fused_modconv=fused, clamp=clamp).float()
        return x, img


class SynthesisNetwork(nn.Module):
    """(ws, global code, encoder features) -> raw image [N, C, R, R] in float32 ('skip' architecture)."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base, channel_max, num_fp16_res, conv_clamp,
                 style_mod=True, cond_mod=True):
        super().__init__()
        log2 = check_resolution(img_resolution)
        check_modulation(style_mod, cond_mod)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.style_mod, self.cond_mod = bool(style_mod), bool(cond_mod)
        self.num_ws = 2 * log2 - 2
        nf1 = channels_at(1, channel_base, channel_max)
        self.code_dim = 2 * nf1
        # Official G_synthesis_co_mod_gan, layer() and torgb(): the modulation vector is the concatenation of the
        # parts switched on, so each affine's input width is the sum of theirs.
        mod_dim = w_dim * self.style_mod + self.code_dim * self.cond_mod
        self.b4 = SynthesisInput(nf1, self.code_dim, mod_dim, img_channels)
        fp16 = fp16_resolutions(log2, num_fp16_res)
        for r in range(3, log2 + 1):
            block = SynthesisBlock(
                2**r, channels_at(r - 2, channel_base, channel_max), channels_at(r - 1, channel_base, channel_max),
                mod_dim, img_channels, use_fp16=(2**r in fp16), conv_clamp=conv_clamp,
            )
            setattr(self, f"b{2**r}", block)
        self.block_resolutions = [2**r for r in range(3, log2 + 1)]

    def check_inputs(self, ws, noise_mode):
        if noise_mode not in ("random", "const", "none"):
            raise NetworkInputError(f"synthesis: noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        if ws.ndim != 3 or list(ws.shape[1:]) != [self.num_ws, self.w_dim]:
            raise NetworkInputError(f"synthesis: ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")

    def modulation_inputs(self, ws, code):
        """Co-modulation: the style input of layer i is concat([w_i, global code]), or the one part switched on
        (style_mod: w_i, cond_mod: the global code); a tuple of num_ws [N, D]."""
        parts = []
        if self.style_mod:
            parts.append(ws.float())
        if self.cond_mod:
            parts.append(code.float().unsqueeze(1).expand(-1, self.num_ws, -1))
        return torch.cat(parts, dim=2).unbind(dim=1)

    def forward(self, ws, code, feats, noise_mode="random", fused_modconv=None):
        self.check_inputs(ws, noise_mode)
        if fused_modconv is None:
            # An exported graph needs a static group count, so export takes the shared-weight path (same result).
            fused_modconv = not self.training and not torch.compiler.is_exporting()
        code = code.float()
        mods = self.modulation_inputs(ws, code)
        x, img = self.b4(code, feats[4], mods[0:2], noise_mode, fused_modconv)
        for res in self.block_resolutions:
            i = 2 * int(math.log2(res)) - 5
            x, img = getattr(self, f"b{res}")(x, img, feats[res], mods[i : i + 3], noise_mode, fused_modconv)
        return img


class Generator(nn.Module):
    """CoModGAN generator: G(img, mask, z) -> img * mask + raw * (1 - mask)."""

    def __init__(
        self,
        z_dim=512,  # Latent z width.
        w_dim=512,  # Intermediate w width.
        img_resolution=512,  # Output resolution: a power of two in 32..1024.
        img_channels=3,  # Image channels.
        channel_base=16384,  # nf(stage) = clip(channel_base / 2**stage, 1, channel_max).
        channel_max=512,  # Maximum feature maps of any layer.
        num_fp16_res=4,  # Highest resolutions that run in float16 (CUDA only).
        conv_clamp=256,  # Activation clamp of the float16 layers (CUDA only); None = off.
        mapping_kwargs=None,  # MappingNetwork arguments (num_layers, layer_features, lr_multiplier, w_avg_beta).
        dropout_rate=0.5,  # Dropout on the global code.
        style_mod=True,  # Modulate by w (official style_mod; False = the paper's conditional-modulation-only G).
        cond_mod=True,  # Modulate by the global code (official cond_mod; False = style modulation only).
    ):
        super().__init__()
        _check_constructor_args(img_resolution, img_channels, channel_base, channel_max, num_fp16_res)
        check_modulation(style_mod, cond_mod)
        mapping_kwargs = dict(mapping_kwargs or {})
        self.init_kwargs = json.loads(json.dumps(dict(
            z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
            mapping_kwargs=mapping_kwargs, dropout_rate=dropout_rate, style_mod=bool(style_mod),
            cond_mod=bool(cond_mod),
        )))
        self.z_dim, self.w_dim, self.img_resolution, self.img_channels = z_dim, w_dim, img_resolution, img_channels
        common = dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
                      conv_clamp=conv_clamp)
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **common, style_mod=style_mod,
                                          cond_mod=cond_mod)
        self.num_ws = self.synthesis.num_ws
        self.encoder = Encoder(img_resolution, img_channels, dropout_rate=dropout_rate, **common)
        # Built whatever style_mod says: the official G_main always builds G_mapping and dlatent_avg, so a
        # style_mod=False pickle holds them (trained with zero gradients) and our parameter set matches it.
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, **mapping_kwargs)
        # Runtime choices, not constructor arguments: checkpoints record neither.
        self.fast_path = None  # an inference backend with IMPLS, eligible(), synthesize(); None = reference only
        self.impl = "ref"

    def impl_names(self):
        """The implementations this Generator can run: 'ref' plus those of its fast path, if one is attached."""
        return ("ref",) + (tuple(self.fast_path.IMPLS) if self.fast_path is not None else ())

    def _check_impl(self, impl):
        if impl not in self.impl_names():
            hint = "" if self.fast_path is not None else (" (the fast paths need inference.fast_path.attach(G); "
                                                          "inference.load_generator attaches it)")
            raise NetworkInputError(f"Generator: impl must be one of {', '.join(self.impl_names())}, got "
                                    f"{impl!r}{hint}")
        return impl

    def set_impl(self, impl):
        """Choose the inference implementation, 'ref' or one of the attached fast path's; returns self.

        A fast implementation runs whenever its path applies (see inference.fast_path: eval mode, no autograd,
        float32 CPU tensors, no module hooks); otherwise, and always with 'ref', the forward runs the layers'
        own modules (the reference, what training differentiates).
        """
        self.impl = self._check_impl(impl)
        return self

    def forward(self, img, mask, z=None, ws=None, truncation_psi=1, truncation_cutoff=None, noise_mode="random",
                return_raw=False, dropout=None, update_emas=False, impl=None):
        """Complete the holes (mask == 0) of img in [-1, 1].

        Exactly one of z [N, z_dim] / ws [N, num_ws, w_dim]; truncation and update_emas apply to z (ws are used
        as given, e.g. after style mixing by the caller); with style_mod=False they reach nothing (the mapping
        still runs and tracks its average, as in the official G_main). `dropout`: None = on in training mode,
        off in eval mode; True/False forces it (True reproduces the official inference). `impl`: one of
        `impl_names()` for this call, None = `self.impl` (see set_impl). Returns the composite, or
        (composite, raw) with return_raw=True.
        """
        impl = self.impl if impl is None else self._check_impl(impl)
        _check_image_and_mask(img, mask, self.img_channels, self.img_resolution, "Generator")
        if (z is None) == (ws is None):
            raise NetworkInputError("Generator: pass exactly one of z and ws")
        if ws is None:
            ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                              update_emas=update_emas)
        if ws.shape[0] != img.shape[0]:
            raise NetworkInputError(f"Generator: {ws.shape[0]} latents for a batch of {img.shape[0]} images")
        dropout = self.training if dropout is None else bool(dropout)
        if impl != "ref" and self.fast_path.eligible(self, img, impl):
            raw = self.fast_path.synthesize(self, img, mask, ws, noise_mode, dropout, impl)
        else:
            code, feats = self.encoder(img, mask, dropout=dropout)
            raw = self.synthesis(ws, code, feats, noise_mode=noise_mode).to(img.dtype)
        out = img * mask + raw * (1 - mask)
        return (out, raw) if return_raw else out


# ----------------------------------------------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(EncoderBlock):
    """One resolution r >= 8: the encoder block's layers ([fromrgb], conv 3x3, conv 3x3 stride 2) plus a residual
    1x1 stride-2 skip, / sqrt(2)."""

    def __init__(self, resolution, in_channels, out_channels, img_channels, is_top, use_fp16, conv_clamp):
        super().__init__(resolution, in_channels, out_channels, img_channels, is_top, use_fp16, conv_clamp)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x):
        x, clamp = self._enter(x)
        gain = math.sqrt(0.5)  # TF: (x + t) / sqrt(2), folded into both branches
        y = self.skip(x, gain=gain, clamp=clamp)
        x = self.conv1(self.conv0(x, clamp=clamp), gain=gain, clamp=clamp)
        return x + y


class DiscriminatorEpilogue(nn.Module):
    """4x4: minibatch stddev, conv 3x3, dense nf(0), dense to one logit."""

    def __init__(self, in_channels, channels, fc_channels, mbstd_group_size, mbstd_num_channels):
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, channels, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(channels * 16, fc_channels, activation="lrelu")
        self.out = FullyConnectedLayer(fc_channels, 1)

    def forward(self, x):
        x = self.conv(self.mbstd(x.float()))
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """CoModGAN residual discriminator: D(img, mask) -> logits [N, 1]."""

    def __init__(
        self,
        img_resolution=512,  # Input resolution: a power of two in 32..1024.
        img_channels=3,  # Image channels.
        channel_base=16384,  # nf(stage) = clip(channel_base / 2**stage, 1, channel_max).
        channel_max=512,  # Maximum feature maps of any layer.
        num_fp16_res=4,  # Highest resolutions that run in float16 (CUDA only).
        conv_clamp=256,  # Activation clamp of the float16 layers (CUDA only); None = off.
        mbstd_group_size=4,  # Minibatch-stddev group size (min(group, N) is used).
        mbstd_num_channels=1,  # Minibatch-stddev features.
    ):
        super().__init__()
        log2 = _check_constructor_args(img_resolution, img_channels, channel_base, channel_max, num_fp16_res)
        self.init_kwargs = json.loads(json.dumps(dict(
            img_resolution=img_resolution, img_channels=img_channels, channel_base=channel_base,
            channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
            mbstd_group_size=mbstd_group_size, mbstd_num_channels=mbstd_num_channels,
        )))
        self.img_resolution, self.img_channels = img_resolution, img_channels
        _add_down_blocks(self, DiscriminatorBlock, log2, img_channels, channel_base, channel_max, num_fp16_res,
                         conv_clamp)
        nf1 = channels_at(1, channel_base, channel_max)
        self.b4 = DiscriminatorEpilogue(nf1, nf1, channels_at(0, channel_base, channel_max), mbstd_group_size,
                                        mbstd_num_channels)
        self.block_resolutions = [2**r for r in range(log2, 2, -1)]

    def forward(self, img, mask):
        _check_image_and_mask(img, mask, self.img_channels, self.img_resolution, "Discriminator")
        x = torch.cat([mask - 0.5, img], dim=1)
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x)
        return self.b4(x)


# ----------------------------------------------------------------------------------------------------------------
# Per-layer summary (network_summary.py is the command line).


def count_params(module, trainable_only=True):
    """Number of (trainable) parameters; buffers (noise_const, w_avg, filters) are not counted."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _shape_str(out):
    if isinstance(out, torch.Tensor):
        return str(list(out.shape))
    if isinstance(out, (tuple, list)):
        return " ".join(_shape_str(o) for o in out if isinstance(o, torch.Tensor))
    return "-"


def _record(rows, name, output, count):
    rows.setdefault(name, (_shape_str(output), count))  # returns None: a hook's return value would replace output


def summarize(module, *inputs, **kwargs):
    """Run module(*inputs, **kwargs) once; return [(name, output shape, own parameter count)] per layer.

    A layer is any submodule that owns parameters directly or is a parameter-free block worth showing (mbstd),
    listed in call order; the counts of all rows add up to count_params(module, trainable_only=False).
    """
    rows, hooks, order = {}, [], []
    for name, sub in module.named_modules():
        own = sum(p.numel() for p in sub.parameters(recurse=False))
        if own == 0 and not isinstance(sub, MinibatchStdLayer):
            continue
        hooks.append(sub.register_forward_pre_hook(lambda _m, _i, n=name: order.append(n)))
        hooks.append(sub.register_forward_hook(lambda _m, _i, o, n=name, c=own: _record(rows, n, o, c)))
    try:
        with torch.no_grad():
            module(*inputs, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return [(n, *rows[n]) for n in dict.fromkeys(order)]


def _print_table(title, rows, parts):
    width = max([len(n) for n, _, _ in rows] + [10])
    print(f"\n{title}")
    print(f"{'layer':<{width}}  {'output shape':<28}  {'params':>12}")
    for name, shape, count in rows:
        print(f"{name:<{width}}  {shape:<28}  {count:>12,}")
    for label, count in parts:
        print(f"{label:<{width}}  {'':<28}  {count:>12,}")


def print_network_summary(resolution=512, channel_base=16384, channel_max=512, batch=1, device="cpu", seed=0,
                          style_mod=True, cond_mod=True):
    """Build G and D, run one forward each and print per-layer rows and per-part totals."""
    torch.manual_seed(seed)
    G = Generator(img_resolution=resolution, channel_base=channel_base, channel_max=channel_max,
                  style_mod=style_mod, cond_mod=cond_mod).to(device).eval()
    D = Discriminator(img_resolution=resolution, channel_base=channel_base, channel_max=channel_max).to(device)
    img = torch.rand([batch, G.img_channels, resolution, resolution], device=device) * 2 - 1
    mask = torch.ones([batch, 1, resolution, resolution], device=device)
    mask[:, :, resolution // 4 : 3 * resolution // 4, resolution // 4 : 3 * resolution // 4] = 0
    z = torch.randn([batch, G.z_dim], device=device)
    g_parts = [(f"G.{p} (trainable)", count_params(getattr(G, p))) for p in ("mapping", "encoder", "synthesis")]
    _print_table("Generator", summarize(G, img, mask, z), g_parts + [("G total (trainable)", count_params(G))])
    _print_table("Discriminator", summarize(D, img, mask), [("D total (trainable)", count_params(D))])
