"""Test helper that builds state dicts shaped exactly like the PyTorch port's `Generator.state_dict()`
(github.com/zengxianyu/co-mod-gan-pytorch, the `*_net_G_ema.pth` files), with random values.

The keys, shapes and order are derived here, independently of converters/port_pth.py, from the port's module
tree (models/networks/co_mod_gan.py: G_mapping, G_synthesis_co_mod_gan; models/networks/stylegan2.py:
EqualLinear, ConvLayer, StyledConv, ModulatedConv2d, NoiseInjection, ToRGB, Blur, Upsample) and torch's
state_dict order (a module's own parameters and buffers, then its children in registration order).
"""

import numpy as np
import torch


def nf_port(stage, fmap_base, fmap_max, fmap_min=1, fmap_decay=1.0):
    """The port's nf(stage): np.clip(int(fmap_base / 2**(stage * fmap_decay)), fmap_min, fmap_max)."""
    return int(np.clip(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_min, fmap_max))


def port_kernel(gain):
    """make_kernel([1, 3, 3, 1]) (outer product, normalised to sum 1) times `gain` (factor**2 when upsampling)."""
    k = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32)
    return k / k.sum() * gain


# Each helper returns (key, shape, role) triples; role tells the value maker what kind of tensor it is.

def _equal_linear(prefix, fin, fout):
    return [(f"{prefix}.weight", [fout, fin], "weight"), (f"{prefix}.bias", [fout], "bias")]


def _conv_layer(prefix, fin, fout, k, downsample=False):
    """ConvLayer (an nn.Sequential): [Blur], EqualConv2d without bias, FusedLeakyReLU with the bias."""
    out, i = [], 0
    if downsample:
        out.append((f"{prefix}.0.kernel", [4, 4], "kernel1"))
        i = 1
    return out + [(f"{prefix}.{i}.weight", [fout, fin, k, k], "weight"), (f"{prefix}.{i + 1}.bias", [fout], "bias")]


def _modulated_conv(prefix, fin, fout, k, style_dim, upsample=False):
    # ModulatedConv2d registers blur (a child) first, then weight, then modulation (a child); own params go first.
    out = [(f"{prefix}.weight", [1, fout, fin, k, k], "weight")]
    if upsample:
        out.append((f"{prefix}.blur.kernel", [4, 4], "kernel4"))
    return out + [(f"{prefix}.modulation.weight", [fin, style_dim], "weight"),
                  (f"{prefix}.modulation.bias", [fin], "mod_bias")]


def _styled_conv(prefix, fin, fout, style_dim, upsample=False):
    return (_modulated_conv(f"{prefix}.conv", fin, fout, 3, style_dim, upsample)
            + [(f"{prefix}.noise.weight", [1], "noise"), (f"{prefix}.activate.bias", [fout], "bias")])


def _to_rgb(prefix, fin, style_dim, channels, upsample=True):
    # ToRGB: own bias [1, C, 1, 1] first, then children upsample (if any) and conv.
    out = [(f"{prefix}.bias", [1, channels, 1, 1], "bias")]
    if upsample:
        out.append((f"{prefix}.upsample.kernel", [4, 4], "kernel4"))
    return out + _modulated_conv(f"{prefix}.conv", fin, channels, 1, style_dim)


def port_generator_keys(resolution, num_channels=3, fmap_base=16384, fmap_max=512, latent_size=512,
                        dlatent_size=512, mapping_layers=8, mapping_fmaps=512):
    """[(key, shape, role)] of the port's Generator.state_dict() in its order."""
    log2 = int(np.log2(resolution))
    def nf(stage):
        return nf_port(stage, fmap_base, fmap_max)
    mod = dlatent_size + nf(1) * 2
    keys = []
    dim_in = latent_size
    for i in range(mapping_layers):
        fout = dlatent_size if i == mapping_layers - 1 else mapping_fmaps
        keys += _equal_linear(f"G_mapping.G_mapping.Dense{i}", dim_in, fout)
        dim_in = fout
    enc = "G_synthesis.E"
    for res in range(log2, 2, -1):
        s = f"{enc}.{2**res}x{2**res}"
        if res == log2:
            keys += _conv_layer(f"{s}_0.FromRGB", num_channels + 1, nf(res - 1), 1)
        keys += _conv_layer(f"{s}.Conv0", nf(res - 1), nf(res - 1), 3)
        keys += _conv_layer(f"{s}.Conv1_down", nf(res - 1), nf(res - 2), 3, downsample=True)
    keys += _conv_layer(f"{enc}.4x4.Conv", nf(2), nf(1), 3) + _equal_linear(f"{enc}.4x4.Dense0", nf(1) * 16, nf(1) * 2)
    g4 = "G_synthesis.G_4x4"
    keys += _equal_linear(f"{g4}.Dense", nf(1) * 2, nf(1) * 16)
    keys += _styled_conv(f"{g4}.Conv", nf(1), nf(1), mod)
    keys += _to_rgb(f"{g4}.ToRGB", nf(1), mod, num_channels, upsample=False)
    for res in range(3, log2 + 1):
        s = f"G_synthesis.G_{2**res}x{2**res}"
        keys += _styled_conv(f"{s}.Conv0_up", nf(res - 2), nf(res - 1), mod, upsample=True)
        keys += _styled_conv(f"{s}.Conv1", nf(res - 1), nf(res - 1), mod)
        keys += _to_rgb(f"{s}.ToRGB", nf(res - 1), mod, num_channels)
    return keys


def make_port_state_dict(resolution, seed=0, prefix="", **kwargs):
    """{key: float32 tensor} like a port net_G_ema.pth; modulation biases hold 1 + N(0, 0.2) as the port's do
    (the official mod_bias + 1), resampling kernels hold the port's filters, the rest N(0, 1) or N(0, 0.3)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape, role in port_generator_keys(resolution, **kwargs):
        if role == "kernel1":
            value = port_kernel(1.0)
        elif role == "kernel4":
            value = port_kernel(4.0)
        elif role == "mod_bias":
            value = 1 + rng.normal(0, 0.2, size=shape)
        elif role in ("bias", "noise"):
            value = rng.normal(0, 0.3, size=shape)
        else:
            value = rng.normal(0, 1, size=shape)
        state[prefix + key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return state
