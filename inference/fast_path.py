"""The inference-only CPU forward of the CoModGAN Generator: the reference layers' arithmetic in fewer passes.

`attach(G)` hands this path to a `training.networks.Generator` (`inference.load_generator` does it, with impl
'fast' as the default). G then calls `synthesize()` instead of its encoder + synthesis modules when `eligible()`:
eval mode, no autograd (torch.no_grad / inference_mode), float32 CPU tensors, impl 'fast' or 'fast-bf16', and
no module hooks (hooks must see every layer, so they get the reference). The result equals the reference to
float32 rounding (tests/test_inference_fast_path.py checks it). It runs the paper's ablations (style_mod or
cond_mod off, docs/ablations.md) too, with no fallback: the modulation vectors come from the synthesis's own
`modulation_inputs()` and the affine widths from its layers (tests/test_ablations.py). What changes is how it is
computed:

- channels_last activations end to end (oneDNN's fast convolution layout on CPU);
- equalized-lr gains, the lrelu gain sqrt(2) (lrelu(x) * g = lrelu(g * x) for g > 0) and the upsampling gain 4
  folded into cached weights and biases, biases added by the convolutions themselves;
- modulation at batch 1: where the weight is smaller than the activation (the high resolutions) the weight is
  modulated and demodulated once per call (no grouped convolution); elsewhere the activation is scaled and the
  shared weight stays fixed, so it is reordered for oneDNN once and cached; demodulation coefficients come from
  cached per-(out, in) squared weight sums, a [N, C_in] x [C_in, C_out] product;
- the [1, 3, 3, 1] blur as a depthwise (groups = C) convolution in channels_last;
- Winograd F(4x4, 3x3) for the wide 3x3 stride-1 convolutions (256+ channels, 8..128 px):
  36 instead of 144 multiplies per output tile and channel pair, at ~4x a direct convolution's rounding error;
- the elementwise tails (noise, leaky ReLU) in place;
- glibc malloc kept off mmap for big tensors (torch_utils.cpu_malloc), which removes a page fault storm.

`impl='fast-bf16'` runs the same path with the convolutions and activations in bfloat16 (oneDNN uses AMX or
AVX512-BF16 where the CPU has them: about 3x faster than float32 on a Sapphire Rapids core) while styles,
demodulation, dense layers and the image sum stay float32. It is an opt-in: its output differs from the
reference by about 1e-2 (bfloat16 keeps 8 significant bits), far more than the float32 path's 1e-4.

Cached tensors live in a weak per-Generator table keyed by every parameter's storage and version, so loading
weights, training steps or `.to()` invalidate them.
"""

import math
import weakref

import torch
import torch.nn.functional as F

from dnnlib import UserError
from torch_utils import cpu_malloc
from torch_utils.ops import upfirdn2d, winograd

ACT_DTYPES = {"fast": torch.float32, "fast-bf16": torch.bfloat16}  # activation dtype of each fast impl
_CL = torch.channels_last
# Winograd for the 3x3 stride-1 convolutions at >= 256 channels and >= 8 px: measured 1.3-2.6x faster there (512
# channels at 8..64 px, 256 at 128 px); 128 channels at 256 px gain nothing, and at 4 px the transforms cost more
# than they save.
WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_SIZE = 256, 8
_LRELU_GAIN = math.sqrt(2)
_LRELU_ALPHA = 0.2
_caches = weakref.WeakKeyDictionary()  # Generator -> {activation dtype: _Cache}


class FastPathError(UserError, ValueError):
    """A fast implementation was asked for where it cannot run (fast-bf16 on a CPU without bfloat16)."""


class FastPath:
    """The backend a Generator holds in `G.fast_path`: stateless (the caches are keyed by G), so a deepcopy of G
    (the EMA copy, a metric's eval copy) shares it safely."""

    IMPLS = tuple(ACT_DTYPES)

    def eligible(self, G, img, impl):
        return eligible(G, img, impl)

    def synthesize(self, G, img, mask, ws, noise_mode, dropout, impl):
        if impl == "fast-bf16" and not bf16_supported():
            raise FastPathError("Generator: impl 'fast-bf16' needs a CPU with native bfloat16 (AVX512-BF16 or AMX) "
                                "and this one has none; use 'fast'")
        return synthesize(G, img, mask, ws, noise_mode, dropout, impl)


def attach(G, impl="fast"):
    """Give Generator G this fast path and make `impl` its default ('fast', 'fast-bf16' or 'ref'); returns G."""
    G.fast_path = FastPath()
    return G.set_impl(impl)


def eligible(G, img, impl):
    """Whether G's forward on `img` may take the fast path (see the module docstring)."""
    if impl not in ACT_DTYPES or G.training or torch.is_grad_enabled():
        return False
    if img.device.type != "cpu" or img.dtype != torch.float32:
        return False
    return not _has_hooks(G)


def bf16_supported():
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX); elsewhere it emulates it, slowly."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _has_hooks(module):
    nn_module = torch.nn.modules.module
    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


# ----------------------------------------------------------------------------------------------------------------
# Cached per-layer constants.


class _Cache:
    """Prepared tensors of one Generator, valid while `key` matches its parameters and buffers."""

    def __init__(self, key, dtype):
        self.key, self.dtype, self.layers, self.packed = key, dtype, {}, {}

    def layer(self, module, prepare):
        entry = self.layers.get(module)
        if entry is None:
            entry = self.layers[module] = prepare(module, self.dtype)
        return entry


def _state_key(G):
    return tuple((t.data_ptr(), t._version) for t in (*G.parameters(), *G.buffers()))


def _cache_of(G, dtype):
    key = _state_key(G)
    per_dtype = _caches.setdefault(G, {})
    cache = per_dtype.get(dtype)
    if cache is None or cache.key != key:
        cache = per_dtype[dtype] = _Cache(key, dtype)
    return cache


def _blur_weight(f, channels, gain=1.0):
    """Depthwise [C, 1, fh, fw] weight applying the 2-D FIR filter f as a true convolution (conv2d correlates)."""
    return (f.flip([0, 1]) * gain)[None, None].repeat(channels, 1, 1, 1)


# Each _prep_* takes the layer and the activation dtype: what touches activations is cast to it once here,
# what feeds the float32 style arithmetic stays float32.


def _prep_conv(layer, dtype):
    """Conv2dLayer: equalized-lr and activation gains folded into the weight and bias."""
    gain = _LRELU_GAIN if layer.activation == "lrelu" else 1.0
    w = (layer.weight * (layer.weight_gain * gain)).to(dtype).contiguous(memory_format=_CL)
    b = None if layer.bias is None else (layer.bias * gain).to(dtype)
    blur = _blur_weight(layer.resample_filter, layer.in_channels).to(dtype) if layer.down > 1 else None
    return dict(w=w, b=b, blur=blur)


def _prep_synthesis(layer, dtype):
    """SynthesisLayer: scaled weight (float32 for modulation, `dtype` for the shared-weight branch), its squared
    sums over the kernel (demodulation), gained bias and noise."""
    w = layer.weight * layer.weight_gain
    prep = dict(w=w, w_act=w.to(dtype), w2=w.square().sum(dim=[2, 3]).t().contiguous(),
                b=(layer.bias * _LRELU_GAIN).to(dtype),
                noise=(layer.noise_const * (layer.noise_strength * _LRELU_GAIN))[None, None].to(dtype),
                strength=layer.noise_strength * _LRELU_GAIN)
    if layer.up > 1:
        prep["blur"] = _blur_weight(layer.resample_filter, layer.out_channels).to(dtype)
        prep["wt"] = (w.transpose(0, 1) * 4).to(dtype).contiguous()  # conv_transpose2d layout, upsampling gain 4
    return prep


def _prep_torgb(layer, dtype):
    return dict(w=layer.weight * layer.weight_gain, b=layer.bias.to(dtype))


# ----------------------------------------------------------------------------------------------------------------
# Layers.


def _use_winograd(x, w, padding, stride):
    """Winograd F(4x4, 3x3) where it beats oneDNN's direct float32 convolution (torch_utils.ops.winograd)."""
    return (x.dtype == torch.float32 and w.shape[2:] == (3, 3) and padding == 1 and stride == 1
            and min(w.shape[:2]) >= WINOGRAD_MIN_CHANNELS and min(x.shape[2:]) >= WINOGRAD_MIN_SIZE)


def _conv(cache, x, w, b=None, padding=0, stride=1, lrelu=False):
    """F.conv2d (+ leaky ReLU) with a fixed weight; its prepared form (oneDNN's reordered copy per input shape,
    or the Winograd transform) is cached."""
    if _use_winograd(x, w, padding, stride):
        key = ("winograd", w.data_ptr())
        u = cache.packed.get(key)
        if u is None:
            u = cache.packed[key] = winograd.transform_weight(w)
        y = winograd.conv3x3(x, u, b)
        return F.leaky_relu_(y, _LRELU_ALPHA) if lrelu else y
    key = (w.data_ptr(), tuple(x.shape), padding, stride)
    packed = cache.packed.get(key)
    if packed is None:
        packed = cache.packed[key] = torch._C._nn.mkldnn_reorder_conv2d_weight(
            w.contiguous().to_mkldnn(), [padding] * 2, [stride] * 2, [1, 1], 1, list(x.shape))
    attr, scalars = ("leaky_relu", [_LRELU_ALPHA]) if lrelu else ("none", [])
    return torch.ops.mkldnn._convolution_pointwise(x, packed, b, [padding] * 2, [stride] * 2, [1, 1], 1, attr,
                                                   scalars, "")


def _prep_fc(layer, dtype):
    """FullyConnectedLayer: [in, out] weight and bias with the equalized-lr (and lrelu) gains folded in; float32
    whatever the activation dtype (styles and the global code feed the float32 arithmetic)."""
    gain = _LRELU_GAIN if layer.activation == "lrelu" else 1.0
    b = torch.zeros([layer.out_features]) if layer.bias is None else layer.bias * (layer.bias_gain * gain)
    return dict(w=(layer.weight * (layer.weight_gain * gain)).t().contiguous(), b=b)


def fully_connected(cache, layer, x):
    """FullyConnectedLayer forward."""
    p = cache.layer(layer, _prep_fc)
    y = torch.addmm(p["b"], x, p["w"])
    return F.leaky_relu_(y, _LRELU_ALPHA) if layer.activation == "lrelu" else y


def encoder_conv(cache, layer, x):
    """Conv2dLayer forward (lrelu), down=2 as blur + stride-2 convolution like conv2d_resample."""
    p = cache.layer(layer, _prep_conv)
    if layer.down > 1:
        # conv2d_resample pads by 2 for a 4-tap filter and 3x3 kernel, then convolves without padding.
        x = F.conv2d(x, p["blur"], padding=2, groups=x.shape[1])
        return _conv(cache, x, p["w"], p["b"], stride=2, lrelu=True)
    return _conv(cache, x, p["w"], p["b"], padding=layer.padding, lrelu=True)


def _noise(layer, p, x, noise_mode):
    """Noise already multiplied by strength * sqrt(2); the same RNG draws as the reference layer."""
    if noise_mode == "random":
        r = layer.resolution
        return (torch.randn([x.shape[0], 1, r, r]) * p["strength"]).to(x.dtype)
    if noise_mode == "const":
        return p["noise"]
    return None


def synthesis_layer(cache, layer, x, mod, noise_mode):
    """SynthesisLayer forward: modulated (and for up=2 transposed + blurred) 3x3 conv, noise, bias, lrelu."""
    p = cache.layer(layer, _prep_synthesis)
    n = x.shape[0]
    styles = fully_connected(cache, layer.affine, mod) + 1
    dcoefs = (styles.square() @ p["w2"] + 1e-8).rsqrt() * _LRELU_GAIN  # [N, C_out], with the lrelu gain
    up = layer.up > 1
    modulate_weight = n == 1 and p["w"].numel() <= x[0].numel()
    if modulate_weight:
        w = (p["w"] * styles.reshape(1, -1, 1, 1) * dcoefs.reshape(-1, 1, 1, 1)).to(x.dtype)
    else:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        w = p["w_act"]
    if up:
        # As conv2d_resample: stride-2 transposed conv (full support), then the blur with gain 4 and padding 1.
        wt = w.transpose(0, 1) * 4 if modulate_weight else p["wt"]
        x = F.conv_transpose2d(x, wt, stride=2)
        bias = p["b"] if modulate_weight else None
        x = F.conv2d(x, p["blur"], bias, padding=1, groups=x.shape[1])
    elif modulate_weight and _use_winograd(x, w, layer.padding, 1):
        x = winograd.conv3x3(x, winograd.transform_weight(w), p["b"])  # per call: ~1 ms at 256 channels
    elif modulate_weight:
        x = F.conv2d(x, w.contiguous(memory_format=_CL), p["b"], padding=layer.padding)
    else:
        x = _conv(cache, x, w, None, padding=layer.padding)
    if not modulate_weight:
        x = torch.addcmul(p["b"].reshape(1, -1, 1, 1), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
    noise = _noise(layer, p, x, noise_mode)
    if noise is not None:
        x.add_(noise)
    return F.leaky_relu_(x, _LRELU_ALPHA)


def torgb(cache, layer, x, mod):
    """ToRGBLayer forward: modulated 1x1 conv without demodulation, bias; float32 out (the image sum)."""
    p = cache.layer(layer, _prep_torgb)
    styles = fully_connected(cache, layer.affine, mod) + 1
    if x.shape[0] == 1:
        y = F.conv2d(x, (p["w"] * styles.reshape(1, -1, 1, 1)).to(x.dtype), p["b"])
    else:
        y = F.conv2d(x * styles.to(x.dtype).reshape(x.shape[0], -1, 1, 1), p["w"].to(x.dtype), p["b"])
    return y.float()


# ----------------------------------------------------------------------------------------------------------------
# Networks.


def encode(cache, encoder, img, mask, dropout):
    """Encoder forward: (global code, {resolution: feature}) with channels_last features."""
    x = torch.cat([mask - 0.5, img * mask], dim=1).to(cache.dtype).contiguous(memory_format=_CL)
    feats = {}
    for res in encoder.block_resolutions[:-1]:
        block = getattr(encoder, f"b{res}")
        if hasattr(block, "fromrgb"):
            x = encoder_conv(cache, block.fromrgb, x)
        feats[res] = encoder_conv(cache, block.conv0, x)
        x = encoder_conv(cache, block.conv1, feats[res])
    epilogue = encoder.b4
    feats[4] = encoder_conv(cache, epilogue.conv, x)
    code = fully_connected(cache, epilogue.fc, feats[4].float().contiguous().flatten(1))
    return F.dropout(code, p=epilogue.dropout_rate, training=dropout), feats


def synthesize(G, img, mask, ws, noise_mode, dropout, impl="fast"):
    """The raw image of G (float32 [N, C, R, R], contiguous), as encoder + synthesis would compute it; `impl`
    is 'fast' (float32) or 'fast-bf16' (bfloat16 activations, see the module docstring)."""
    cpu_malloc.keep_large_allocations()
    cache = _cache_of(G, ACT_DTYPES[impl])
    code, feats = encode(cache, G.encoder, img, mask, dropout)
    syn = G.synthesis
    syn.check_inputs(ws, noise_mode)
    mods = syn.modulation_inputs(ws, code)
    b4 = syn.b4
    x = fully_connected(cache, b4.fc, code).reshape(-1, b4.channels, 4, 4).to(cache.dtype)
    x = x.contiguous(memory_format=_CL) + feats[4]
    x = synthesis_layer(cache, b4.conv, x, mods[0], noise_mode)
    image = torgb(cache, b4.torgb, x, mods[1])
    for res in syn.block_resolutions:
        block = getattr(syn, f"b{res}")
        i = 2 * int(math.log2(res)) - 5
        x = synthesis_layer(cache, block.conv0, x, mods[i], noise_mode)
        x.add_(feats[res])
        x = synthesis_layer(cache, block.conv1, x, mods[i + 1], noise_mode)
        image = upfirdn2d.upsample2d(image, block.resample_filter) + torgb(cache, block.torgb, x, mods[i + 2])
    return image.contiguous()
