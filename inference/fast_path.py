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
- per layer, a variant chosen by inference.conv_plan (a per-machine calibration, the table measured for this CPU
  class, or its rules): at batch 1 the weight is modulated and demodulated per call ('weight' mode: no grouped
  convolution), or the activation is scaled around a fixed weight that is prepared once and cached ('activation'
  mode); demodulation coefficients come from cached per-(out, in) squared weight sums, a [N, C_in] x [C_in, C_out]
  product; the 3x3 convolutions run oneDNN's direct algorithm, NNPACK's Winograd F(6x6, 3x3) or our
  F(4x4, 3x3) / F(2x2, 3x3) (torch_utils.ops.winograd: 36 or 16 instead of 144 or 36 multiplies per output tile
  and channel pair, at ~4x a direct convolution's rounding error for F(4x4)); the upsampling layers oneDNN's
  transposed convolution or four phase convolutions (torch_utils.ops.polyphase); docs/cpu-fast-path.md;
- the [1, 3, 3, 1] blur as a depthwise (groups = C) convolution in channels_last;
- the elementwise tails (noise, leaky ReLU) in place;
- glibc malloc kept off mmap for big tensors (torch_utils.cpu_malloc), which removes a page fault storm; the
  cached tensors alone are created with mmap allowed, so that they do not pin the heap in pieces.

`impl='fast-bf16'` runs the same path with the convolutions and activations in bfloat16 (oneDNN uses AMX or
AVX512-BF16 where the CPU has them: about 3x faster than float32 on a Sapphire Rapids core) while styles,
demodulation, dense layers and the image sum stay float32. It is an opt-in: its output differs from the
reference by about 1e-2 (bfloat16 keeps 8 significant bits), far more than the float32 path's 1e-4.

Cached tensors live in a weak per-Generator table keyed by every parameter's storage and version (and by the
plan), so loading weights, training steps or `.to()` invalidate them. Each fixed weight is cached in the one
prepared form its variant reads (oneDNN's packed copy, a Winograd transform, the upsampling layouts), never as a
second plain copy: the parameters are read in place.
"""

import math
import weakref

import torch
import torch.nn.functional as F

from dnnlib import UserError
from inference import conv_plan
from torch_utils import cpu_malloc
from torch_utils.ops import polyphase, upfirdn2d, winograd

ACT_DTYPES = {"fast": torch.float32, "fast-bf16": torch.bfloat16}  # activation dtype of each fast impl
_CL = torch.channels_last
_LRELU_GAIN = math.sqrt(2)
_LRELU_ALPHA = 0.2
_WINOGRAD_TILES = {"winograd4": 4, "winograd2": 2}
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
    """Prepared tensors of one Generator, valid while `key` matches its parameters and buffers: `layers` holds
    each layer's small constants (biases, noise, demodulation sums), `weights` the one prepared form of each fixed
    weight that its variant uses (oneDNN's packed copy per input shape, a Winograd transform or the upsampling
    layouts). The weights themselves are read from the parameters, never copied otherwise."""

    def __init__(self, key, dtype, plan):
        self.key, self.dtype, self.plan, self.layers, self.weights = key, dtype, plan, {}, {}

    def layer(self, module, prepare):
        entry = self.layers.get(module)
        if entry is None:
            with cpu_malloc.outside_heap():
                entry = self.layers[module] = prepare(module, self.dtype)
        return entry

    def weight(self, key, prepare):
        entry = self.weights.get(key)
        if entry is None:
            with cpu_malloc.outside_heap():
                entry = self.weights[key] = prepare()
        return entry

    def variant(self, kind, x, c_out):
        return self.plan.variant(kind, tuple(x.shape), c_out, float32=self.dtype == torch.float32)

    def nbytes(self):
        """Bytes held by the prepared tensors."""
        tensors = [t for entry in self.layers.values() for t in entry.values() if isinstance(t, torch.Tensor)]
        for entry in self.weights.values():
            tensors.extend(entry if isinstance(entry, tuple) else [entry])
        return sum(t.numel() * t.element_size() for t in tensors)


def _state_key(G):
    return tuple((t.data_ptr(), t._version) for t in (*G.parameters(), *G.buffers()))


def _cache_of(G, dtype):
    key, plan = _state_key(G), conv_plan.current_plan()
    per_dtype = _caches.setdefault(G, {})
    cache = per_dtype.get(dtype)
    if cache is None or cache.key != key or cache.plan is not plan:
        cache = per_dtype[dtype] = _Cache(key, dtype, plan)
    return cache


def _blur_weight(f, channels, gain=1.0):
    """Depthwise [C, 1, fh, fw] weight applying the 2-D FIR filter f as a true convolution (conv2d correlates)."""
    return (f.flip([0, 1]) * gain)[None, None].repeat(channels, 1, 1, 1)


# Each _prep_* takes the layer and the activation dtype: what touches activations is cast to it once here,
# what feeds the float32 style arithmetic stays float32.


def _prep_conv(layer, dtype):
    """Conv2dLayer: the gain the weight gets (equalized lr, and lrelu's), the gained bias, the down blur."""
    gain = _LRELU_GAIN if layer.activation == "lrelu" else 1.0
    b = None if layer.bias is None else (layer.bias * gain).to(dtype)
    blur = _blur_weight(layer.resample_filter, layer.in_channels).to(dtype) if layer.down > 1 else None
    return dict(gain=layer.weight_gain * gain, b=b, blur=blur)


def _prep_synthesis(layer, dtype):
    """SynthesisLayer: squared sums of the scaled weight over the kernel (demodulation), gained bias and noise."""
    prep = dict(w2=(layer.weight.square().sum(dim=[2, 3]) * layer.weight_gain**2).t().contiguous(),
                b=(layer.bias * _LRELU_GAIN).to(dtype),
                noise=(layer.noise_const * (layer.noise_strength * _LRELU_GAIN))[None, None].to(dtype),
                strength=layer.noise_strength * _LRELU_GAIN)
    if layer.up > 1:
        prep["blur"] = _blur_weight(layer.resample_filter, layer.out_channels).to(dtype)
    return prep


def _prep_torgb(layer, dtype):
    return dict(w=layer.weight * layer.weight_gain, b=layer.bias.to(dtype))


# ----------------------------------------------------------------------------------------------------------------
# Layers.


def _pack(w, x_shape, padding, stride):
    """oneDNN's reordered copy of weight w for inputs of x_shape (what F.conv2d would redo on every call)."""
    return torch._C._nn.mkldnn_reorder_conv2d_weight(w.contiguous().to_mkldnn(), [padding] * 2, [stride] * 2,
                                                     [1, 1], 1, list(x_shape))


def _conv(x, w, b=None, padding=0, stride=1, lrelu=False, algo="direct"):
    """F.conv2d (+ leaky ReLU) with a fixed weight w in its prepared form: oneDNN's packed copy ('direct') or a
    Winograd transform ('winograd4', 'winograd2', 3x3 stride 1 padding 1 only)."""
    if algo in _WINOGRAD_TILES or algo == "nnpack":
        y = winograd.conv3x3(x, w, b) if algo != "nnpack" else _nnpack(x, w, b)
        return F.leaky_relu_(y, _LRELU_ALPHA) if lrelu else y
    attr, scalars = ("leaky_relu", [_LRELU_ALPHA]) if lrelu else ("none", [])
    return torch.ops.mkldnn._convolution_pointwise(x, w, b, [padding] * 2, [stride] * 2, [1, 1], 1, attr,
                                                   scalars, "")


def _nnpack(x, w, b=None):
    """NNPACK's 3x3 stride-1 padding-1 convolution (its Winograd F(6x6, 3x3) kernels for AVX2 and NEON; the
    kernel transform runs per call), channels_last in and out."""
    if b is None:
        b = torch.zeros([w.shape[0]], dtype=x.dtype)
    conv_plan.nnpack_available()  # initialises NNPACK, without which its convolution fails
    y = torch._nnpack_spatial_convolution(x.contiguous(), w, b, [1, 1])
    return y.contiguous(memory_format=_CL)


def _fixed_weight(cache, module, x, w_of, algo, padding=1, stride=1):
    """The cached prepared form of a fixed weight (w_of() builds the plain [C_out, C_in, k, k] weight, which is
    dropped once prepared) for `algo` and inputs shaped like x."""
    if algo in _WINOGRAD_TILES:
        return cache.weight((module, algo), lambda: winograd.transform_weight(w_of(), _WINOGRAD_TILES[algo]))
    if algo == "nnpack":
        return cache.weight((module, algo), lambda: w_of().contiguous())
    return cache.weight((module, algo, tuple(x.shape)), lambda: _pack(w_of(), x.shape, padding, stride))


def _prep_fc(layer, dtype):
    """FullyConnectedLayer: its gains (equalized lr, and lrelu's) and the gained bias; float32 whatever the
    activation dtype (styles and the global code feed the float32 arithmetic)."""
    gain = _LRELU_GAIN if layer.activation == "lrelu" else 1.0
    b = torch.zeros([layer.out_features]) if layer.bias is None else layer.bias * (layer.bias_gain * gain)
    return dict(gain=layer.weight_gain * gain, b=b)


def fully_connected(cache, layer, x):
    """FullyConnectedLayer forward: the weight's gain applied to the product, the weight read in place."""
    p = cache.layer(layer, _prep_fc)
    y = torch.addmm(p["b"], x, layer.weight.t(), alpha=p["gain"])
    return F.leaky_relu_(y, _LRELU_ALPHA) if layer.activation == "lrelu" else y


def encoder_conv(cache, layer, x, variant=None):
    """Conv2dLayer forward (lrelu), down=2 as blur + stride-2 convolution like conv2d_resample; a 3x3 stride-1
    layer runs `variant` (default: the plan's)."""
    p = cache.layer(layer, _prep_conv)

    def weight():
        return (layer.weight * p["gain"]).to(cache.dtype).contiguous(memory_format=_CL)

    if layer.down > 1:
        # conv2d_resample pads by 2 for a 4-tap filter and 3x3 kernel, then convolves without padding.
        x = F.conv2d(x, p["blur"], padding=2, groups=x.shape[1])
        return _conv(x, _fixed_weight(cache, layer, x, weight, "direct", 0, 2), p["b"], stride=2, lrelu=True)
    algo = "direct"
    if layer.kernel_size == 3:
        algo = variant or cache.variant("conv", x, layer.out_channels)
    w = _fixed_weight(cache, layer, x, weight, algo, layer.padding)
    return _conv(x, w, p["b"], padding=layer.padding, lrelu=True, algo=algo)


def _noise(layer, p, x, noise_mode):
    """Noise already multiplied by strength * sqrt(2); the same RNG draws as the reference layer."""
    if noise_mode == "random":
        r = layer.resolution
        return (torch.randn([x.shape[0], 1, r, r]) * p["strength"]).to(x.dtype)
    if noise_mode == "const":
        return p["noise"]
    return None


def _up(x, wt, algo):
    """The 2x upsampling layer's stride-2 transposed convolution: `wt` is the conv_transpose2d weight [C_in, C_out,
    3, 3] (gains included) for oneDNN's ('transposed'), or its polyphase.phase_weights() ('polyphase')."""
    if algo == "polyphase":
        return polyphase.conv_transpose2d_phases(x, wt if isinstance(wt, tuple) else polyphase.phase_weights(wt))
    return F.conv_transpose2d(x, wt, stride=2)


def synthesis_layer(cache, layer, x, mod, noise_mode, variant=None):
    """SynthesisLayer forward: modulated (and for up=2 transposed + blurred) 3x3 conv, noise, bias, lrelu;
    `variant` (default: the plan's) picks the modulation mode and the convolution algorithm."""
    p = cache.layer(layer, _prep_synthesis)
    n, up = x.shape[0], layer.up > 1
    variant = variant or cache.variant("synth_up" if up else "synth", x, layer.out_channels)
    mode, algo = variant.split("-")
    styles = fully_connected(cache, layer.affine, mod) + 1
    dcoefs = (styles.square() @ p["w2"] + 1e-8).rsqrt() * _LRELU_GAIN  # [N, C_out], with the lrelu gain
    gain = layer.weight_gain * (4 if up else 1)  # conv2d_resample's upsampling gain 4
    if mode == "weight":
        assert n == 1, "the modulated-weight variants run at batch 1"
        w = (layer.weight * (styles * gain).reshape(1, -1, 1, 1) * dcoefs.reshape(-1, 1, 1, 1)).to(x.dtype)
    else:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        w = None

    def fixed():
        return (layer.weight * gain).to(cache.dtype)

    if up:
        # As conv2d_resample: stride-2 transposed conv (full support), then the blur (gain 4 above), padding 1.
        if mode == "weight":
            wt = w.transpose(0, 1)
        elif algo == "polyphase":
            wt = cache.weight((layer, algo), lambda: polyphase.phase_weights(fixed().transpose(0, 1)))
        else:
            wt = cache.weight((layer, algo), lambda: fixed().transpose(0, 1).contiguous())
        x = _up(x, wt, algo)
        x = F.conv2d(x, p["blur"], p["b"] if mode == "weight" else None, padding=1, groups=x.shape[1])
    elif mode == "weight" and algo == "nnpack":
        x = _nnpack(x, w, p["b"])
    elif mode == "weight" and algo in _WINOGRAD_TILES:
        x = winograd.conv3x3(x, winograd.transform_weight(w, _WINOGRAD_TILES[algo]), p["b"])
    elif mode == "weight":
        x = F.conv2d(x, w.contiguous(memory_format=_CL), p["b"], padding=layer.padding)
    else:
        w = _fixed_weight(cache, layer, x, lambda: fixed().contiguous(memory_format=_CL), algo, layer.padding)
        x = _conv(x, w, padding=layer.padding, algo=algo)
    if mode == "activation":
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
