"""Test helper: an independent NumPy float64 implementation of the official CoModGAN forward (zsyzzsoft/co-mod-gan,
training/co_mod_gan.py: G_main, G_mapping, G_synthesis_co_mod_gan, D_co_mod_gan; dnnlib/tflib/ops/upfirdn_2d.py),
reading TF-layout variables by their official names.

It is written from the official TF code, not from our PyTorch networks, and follows its structure function by
function: equalized learning rate applied at run time (`get_weight`), `fused_bias_act` gains, NCHW activations,
TF weight layouts (conv [k, k, in, out], dense [in, out]), the FIR resampling of `upfirdn_2d` (`_setup_kernel`,
`_simple_upfirdn_2d`, `upsample_2d`, `upsample_conv_2d` with its flipped, transposed kernel, `conv_downsample_2d`),
`minibatch_stddev_layer`. The variables are a dict {name: array} in the naming of a pickled network tree:
'dlatent_avg', 'mapping/Dense0/weight', 'synthesis/E_64x64/Conv0/weight', 'synthesis/noise0', ... for G/Gs and
'64x64/Conv0/weight', ... for D (tests/tf_pickle_maker.variables_of gives exactly that).

Inference semantics (is_training=False): no style mixing, no w-average update, truncation only if a psi is given
(run_generator.py's default is none; the metrics pass truncation_psi_val=None). The per-layer noise is the
network's noise variables (randomize_noise=False). The global-code dropout, `tf.nn.dropout(x, 0.5)` (TF 1.x:
keep_prob 0.5: keep each unit with probability 0.5 and scale the kept ones by 1/0.5), is off unless a 0/1 keep
mask is given.
"""

import numpy as np

LRELU_ALPHA, LRELU_GAIN = 0.2, np.sqrt(2)  # fused_bias_act's defaults for 'lrelu'
RESAMPLE_KERNEL = [1, 3, 3, 1]


# ----------------------------------------------------------------------------------------------------------------
# Layers (co_mod_gan.py: get_weight, dense_layer, conv2d_layer, apply_bias_act).

def get_weight(w, gain=1.0, lrmul=1.0):
    """Runtime weight: he_std * lrmul with he_std = gain / sqrt(fan_in), fan_in = prod(shape[:-1])."""
    w = np.asarray(w, np.float64)
    return w * (gain / np.sqrt(np.prod(w.shape[:-1])) * lrmul)


def dense_layer(x, w, lrmul=1.0):
    """x flattened (NCHW order, as tf.reshape) times the [in, out] runtime weight."""
    x = x.reshape(x.shape[0], -1)
    return x @ get_weight(w, lrmul=lrmul)


def apply_bias_act(x, b, act="linear", lrmul=1.0):
    """Bias (times lrmul) on axis 1, then the activation with fused_bias_act's gain."""
    b = np.asarray(b, np.float64) * lrmul
    x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        return np.where(x >= 0, x, x * LRELU_ALPHA) * LRELU_GAIN
    assert act == "linear"
    return x


def _conv_valid(x, w, stride=1):
    """tf.nn.conv2d(padding='VALID', NCHW), a cross-correlation; w [k, k, I, O] or per sample [N, k, k, I, O]."""
    k = w.shape[-4]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    if w.ndim == 5:
        return np.einsum("nchwab,nabco->nohw", win, w, optimize=True)
    return np.einsum("nchwab,abco->nohw", win, w, optimize=True)


def conv2d_same(x, w):
    """tf.nn.conv2d(padding='SAME', stride 1) for an odd kernel: pad k // 2 on every side."""
    p = w.shape[-4] // 2
    return _conv_valid(np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))), w)


# ----------------------------------------------------------------------------------------------------------------
# Resampling (upfirdn_2d.py).

def setup_kernel(k):
    k = np.asarray(k, np.float64)
    if k.ndim == 1:
        k = np.outer(k, k)
    return k / np.sum(k)


def upfirdn_2d(x, k, up=1, pad0=0, pad1=0):
    """_upfirdn_2d_ref with down = 1 and non-negative pads: insert up-1 zeros after each pixel, pad, then
    tf.nn.conv2d with the flipped kernel k[::-1, ::-1] (i.e. a true convolution with k), per channel."""
    n, c, h, w = x.shape
    if up > 1:
        z = np.zeros([n, c, h * up, w * up])
        z[:, :, ::up, ::up] = x
        x = z
    x = np.pad(x, ((0, 0), (0, 0), (pad0, pad1), (pad0, pad1)))
    y = _conv_valid(x.reshape(n * c, 1, *x.shape[2:]), k[::-1, ::-1, None, None])
    return y.reshape(n, c, *y.shape[2:])


def upsample_2d(x, k=RESAMPLE_KERNEL, factor=2):
    k = setup_kernel(k) * factor**2
    p = k.shape[0] - factor
    return upfirdn_2d(x, k, up=factor, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2)


def upsample_conv_2d(x, w, k=RESAMPLE_KERNEL, factor=2):
    """conv2d_transpose (stride 2, VALID) with the kernel flipped and in/out swapped, then the FIR filter.

    x [N, I, H, W]; w [k, k, I, O] shared or [N, k, k, I, O] per sample (the fused grouped convolution)."""
    k = setup_kernel(k) * factor**2
    conv = w.shape[-4]
    p = (k.shape[0] - factor) - (conv - 1)
    per_sample = w if w.ndim == 5 else np.broadcast_to(w, (x.shape[0],) + w.shape)
    # upsample_conv_2d's "Transpose weights": filt[a, b, o, i] = w[conv-1-a, conv-1-b, i, o] ([h, w, out, in]).
    filt = np.transpose(per_sample[:, ::-1, ::-1], (0, 1, 2, 4, 3))
    n, _c, h, wd = x.shape
    out = np.zeros([n, filt.shape[3], (h - 1) * factor + conv, (wd - 1) * factor + conv])
    # conv2d_transpose is the adjoint of a stride-2 VALID conv2d with filt: each input pixel spreads its taps.
    for a in range(conv):
        for b in range(conv):
            out[:, :, a:a + factor * (h - 1) + 1:factor, b:b + factor * (wd - 1) + 1:factor] += np.einsum(
                "nihw,noi->nohw", x, filt[:, a, b], optimize=True)
    return upfirdn_2d(out, k, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2 + 1)


def conv_downsample_2d(x, w, k=RESAMPLE_KERNEL, factor=2):
    """FIR filter with pads ((p+1)//2, p//2), p = (len(k) - factor) + (conv - 1), then a stride-2 VALID conv."""
    k = setup_kernel(k)
    conv = w.shape[0]
    p = (k.shape[0] - factor) + (conv - 1)
    return _conv_valid(upfirdn_2d(x, k, pad0=(p + 1) // 2, pad1=p // 2), w, stride=factor)


def conv2d_layer(x, w, up=False, down=False):
    w = get_weight(w)
    if up:
        return upsample_conv_2d(x, w)
    if down:
        return conv_downsample_2d(x, w)
    return conv2d_same(x, w)


def modulated_conv2d_layer(x, y, v, scope, up=False, demodulate=True):
    """Styles s = dense(y, mod_weight) + mod_bias + 1; ww = w * s (input maps), demodulated by
    rsqrt(sum ww^2 + 1e-8) per output map; the fused (per-sample) convolution, optionally upsampling."""
    w = get_weight(v[f"{scope}/weight"])  # [k, k, I, O]
    s = apply_bias_act(dense_layer(y, v[f"{scope}/mod_weight"]), v[f"{scope}/mod_bias"]) + 1  # [N, I]
    ww = w[np.newaxis] * s[:, np.newaxis, np.newaxis, :, np.newaxis]  # [N, k, k, I, O]
    if demodulate:
        d = 1 / np.sqrt(np.sum(ww**2, axis=(1, 2, 3)) + 1e-8)  # [N, O]
        ww = ww * d[:, np.newaxis, np.newaxis, np.newaxis, :]
    if up:
        return upsample_conv_2d(x, ww)
    return conv2d_same(x, ww)


def minibatch_stddev_layer(x, group_size=4, num_new_features=1):
    """Samples split as reshape([G, M, ...]) (sample g*M + m is in group m); stddev over each group, averaged
    over channels and pixels, appended as num_new_features maps."""
    g = min(group_size, x.shape[0])
    n, c, h, w = x.shape
    y = x.reshape(g, -1, num_new_features, c // num_new_features, h, w)
    y = y - y.mean(axis=0, keepdims=True)
    y = np.sqrt(np.mean(y**2, axis=0) + 1e-8)  # [M, n, c, H, W]
    y = y.mean(axis=(2, 3, 4))  # [M, n]
    y = np.tile(y[:, :, None, None], (g, 1, h, w))  # [N, n, H, W]
    return np.concatenate([x, y], axis=1)


# ----------------------------------------------------------------------------------------------------------------
# Networks.

def nf_fn(fmap_base=16 << 10, fmap_decay=1.0, fmap_min=1, fmap_max=512):
    return lambda stage: int(np.clip(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_min, fmap_max))


def G_mapping(latents, v, mapping_layers=8, mapping_lrmul=0.01, dlatent_broadcast=None, prefix="mapping/"):
    """Normalize z (2nd moment), mapping_layers x (dense + bias, both times lrmul 0.01, lrelu), broadcast."""
    x = np.asarray(latents, np.float64)
    x = x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + 1e-8)
    for i in range(mapping_layers):
        x = apply_bias_act(dense_layer(x, v[f"{prefix}Dense{i}/weight"], lrmul=mapping_lrmul),
                           v[f"{prefix}Dense{i}/bias"], act="lrelu", lrmul=mapping_lrmul)
    if dlatent_broadcast is not None:
        x = np.tile(x[:, np.newaxis], (1, dlatent_broadcast, 1))
    return x


def G_synthesis_co_mod_gan(dlatents, images, masks, v, resolution, dropout_keep=None, prefix="synthesis/",
                           style_mod=True, cond_mod=True, **nf_kwargs):
    """The 'skip' co-modulated synthesis with its encoder; returns the composite y*(1-mask) + images*mask.

    dropout_keep: None = no dropout; else a 0/1 array [N, 2*nf(1)] of kept units (kept ones scaled by 2).
    style_mod / cond_mod: the official switches; the modulation vector of layer() and torgb() is the concatenation
    of [dlatents[:, layer_idx]] if style_mod and [x_global] if cond_mod (this helper needs at least one)."""
    nf = nf_fn(**nf_kwargs)
    log2 = int(np.log2(resolution))
    images = np.asarray(images, np.float64)
    masks = np.asarray(masks, np.float64)

    def var(name):
        return v[prefix + name]

    # Encoder: E_{R}..E_8 (FromRGB at the top, Conv0 kept as the skip feature, Conv1_down), then E_4x4.
    feats = {}
    x = None
    y = np.concatenate([masks - 0.5, images * masks], axis=1)
    for res in range(log2, 2, -1):
        s = f"E_{2**res}x{2**res}"
        if res == log2:
            x = apply_bias_act(conv2d_layer(y, var(f"{s}/FromRGB/weight")), var(f"{s}/FromRGB/bias"), "lrelu")
        x = apply_bias_act(conv2d_layer(x, var(f"{s}/Conv0/weight")), var(f"{s}/Conv0/bias"), "lrelu")
        feats[res] = x
        x = apply_bias_act(conv2d_layer(x, var(f"{s}/Conv1_down/weight"), down=True), var(f"{s}/Conv1_down/bias"),
                           "lrelu")
    x = apply_bias_act(conv2d_layer(x, var("E_4x4/Conv/weight")), var("E_4x4/Conv/bias"), "lrelu")
    feats[2] = x
    x = apply_bias_act(dense_layer(x, var("E_4x4/Dense0/weight")), var("E_4x4/Dense0/bias"), "lrelu")
    if dropout_keep is not None:
        x = x * np.asarray(dropout_keep, np.float64) / 0.5
    x_global = x

    def mod_vector(layer_idx):
        parts = ([dlatents[:, layer_idx]] if style_mod else []) + ([x_global] if cond_mod else [])
        return np.concatenate(parts, axis=1)

    def layer(x, layer_idx, scope, up=False):
        mod = mod_vector(layer_idx)
        x = modulated_conv2d_layer(x, mod, v, prefix + scope, up=up)
        x = x + np.asarray(var(f"noise{layer_idx}"), np.float64) * float(var(f"{scope}/noise_strength"))
        return apply_bias_act(x, var(f"{scope}/bias"), "lrelu")

    def torgb(x, y, res, scope):
        mod = mod_vector(res * 2 - 3)
        t = apply_bias_act(modulated_conv2d_layer(x, mod, v, prefix + scope, demodulate=False), var(f"{scope}/bias"))
        return t if y is None else y + t

    # G_4x4: dense from the global code, + the encoder's 4x4 feature, Conv, ToRGB.
    x = apply_bias_act(dense_layer(x_global, var("G_4x4/Dense/weight")), var("G_4x4/Dense/bias"), "lrelu")
    x = x.reshape(-1, nf(1), 4, 4) + feats[2]
    x = layer(x, 0, "G_4x4/Conv")
    y = torgb(x, None, 2, "G_4x4/ToRGB")
    for res in range(3, log2 + 1):
        s = f"G_{2**res}x{2**res}"
        x = layer(x, res * 2 - 5, f"{s}/Conv0_up", up=True)
        x = x + feats[res]
        x = layer(x, res * 2 - 4, f"{s}/Conv1")
        y = upsample_2d(y)
        y = torgb(x, y, res, f"{s}/ToRGB")
    return y * (1 - masks) + images * masks


def G_main(latents, images, masks, v, resolution, truncation_psi=None, dropout_keep=None, mapping_layers=8,
           **nf_kwargs):
    """Inference G_main: mapping, optional truncation of all layers toward dlatent_avg, synthesis (nf_kwargs may
    also carry style_mod / cond_mod)."""
    num_layers = int(np.log2(resolution)) * 2 - 2
    dlatents = G_mapping(latents, v, mapping_layers=mapping_layers, dlatent_broadcast=num_layers)
    if truncation_psi is not None:
        avg = np.asarray(v["dlatent_avg"], np.float64)
        dlatents = avg + (dlatents - avg) * truncation_psi  # tflib.lerp(dlatent_avg, dlatents, psi)
    return G_synthesis_co_mod_gan(dlatents, images, masks, v, resolution, dropout_keep=dropout_keep, **nf_kwargs)


def G_main_training(latents, latents2, mixing_cutoff, images, masks, v, resolution, truncation_psi=0.5,
                    dlatent_avg_beta=0.995, dropout_keep=None, mapping_layers=8, **nf_kwargs):
    """Training G_main (is_training=True): update dlatent_avg from the batch mean of dlatents[:, 0], mix styles
    (layers >= mixing_cutoff from latents2's mapping), truncate every layer toward the updated average by
    truncation_psi (not reset when is_training), synthesize. Returns (images, updated dlatent_avg).

    The noise is the network's noise variables times noise_strength: set the strengths to 0 to compare with a
    network that draws random noise in training."""
    num_layers = int(np.log2(resolution)) * 2 - 2
    dlatents = G_mapping(latents, v, mapping_layers=mapping_layers, dlatent_broadcast=num_layers)
    avg = np.asarray(v["dlatent_avg"], np.float64)
    avg = dlatents[:, 0].mean(axis=0) + (avg - dlatents[:, 0].mean(axis=0)) * dlatent_avg_beta  # lerp(batch, avg, b)
    dlatents2 = G_mapping(latents2, v, mapping_layers=mapping_layers, dlatent_broadcast=num_layers)
    layer_idx = np.arange(num_layers)[np.newaxis, :, np.newaxis]
    dlatents = np.where(layer_idx < mixing_cutoff, dlatents, dlatents2)
    dlatents = avg + (dlatents - avg) * truncation_psi
    out = G_synthesis_co_mod_gan(dlatents, images, masks, v, resolution, dropout_keep=dropout_keep, **nf_kwargs)
    return out, avg


def D_co_mod_gan(images, masks, v, resolution, mbstd_group_size=4, mbstd_num_features=1):
    """'resnet' D: input concat([mask - 0.5, images]); FromRGB at the top; blocks down to 8x8 with a 1x1 Skip;
    4x4: minibatch stddev, Conv, Dense0, Output (one score). The widths are those of the variables."""
    log2 = int(np.log2(resolution))
    y = np.concatenate([np.asarray(masks, np.float64) - 0.5, np.asarray(images, np.float64)], axis=1)
    x = None
    for res in range(log2, 2, -1):
        s = f"{2**res}x{2**res}"
        if res == log2:
            x = apply_bias_act(conv2d_layer(y, v[f"{s}/FromRGB/weight"]), v[f"{s}/FromRGB/bias"], "lrelu")
        t = x
        x = apply_bias_act(conv2d_layer(x, v[f"{s}/Conv0/weight"]), v[f"{s}/Conv0/bias"], "lrelu")
        x = apply_bias_act(conv2d_layer(x, v[f"{s}/Conv1_down/weight"], down=True), v[f"{s}/Conv1_down/bias"],
                           "lrelu")
        t = conv2d_layer(t, v[f"{s}/Skip/weight"], down=True)
        x = (x + t) * (1 / np.sqrt(2))
    x = minibatch_stddev_layer(x, mbstd_group_size, mbstd_num_features)
    x = apply_bias_act(conv2d_layer(x, v["4x4/Conv/weight"]), v["4x4/Conv/bias"], "lrelu")
    x = apply_bias_act(dense_layer(x, v["4x4/Dense0/weight"]), v["4x4/Dense0/bias"], "lrelu")
    return apply_bias_act(dense_layer(x, v["Output/weight"]), v["Output/bias"])
