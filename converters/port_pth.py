"""Import of the PyTorch port's converted generators (`*_net_G_ema.pth` of zengxianyu/co-mod-gan-pytorch):
weights-only loading, the shapes-to-kwargs inference and the key-to-parameter mapping.

The port (github.com/zengxianyu/co-mod-gan-pytorch, `models/networks/co_mod_gan.py`) distributes the official
TF weights converted to a plain `state_dict()` of its `Generator` (mapping `G_mapping`, synthesis
`G_synthesis` with the encoder `E`), e.g. co-mod-gan-ffhq-9-025000_net_G_ema.pth (FFHQ 512),
co-mod-gan-ffhq-10-025000_net_G_ema.pth (FFHQ 1024) and co-mod-gan-places2-050000_net_G_ema.pth (Places2 512).
Only G_ema is in such a file: the snapshot made from it has kind 'generator' and no G, no D and no optimizer
states, so training cannot resume from it (training.checkpoint.check_resumable says so).

Safety: the file is read with `torch.load(weights_only=True)`, which refuses any pickled object other than
tensors and plain containers; then every entry must be a float tensor under a string key (a `module.` prefix,
left by DataParallel, is dropped). Nothing from the file runs.

Key mapping (R = resolution, r = 8..R, L = mapping layer; port key -> our key):

    G_mapping.G_mapping.Dense{L}.{weight,bias}           mapping.fc{L}.*                  copied
    G_synthesis.E.{R}x{R}_0.FromRGB.0.weight / .1.bias   encoder.b{R}.fromrgb.*
    G_synthesis.E.{r}x{r}.Conv0.0.weight / .1.bias       encoder.b{r}.conv0.*
    G_synthesis.E.{r}x{r}.Conv1_down.1.weight / .2.bias  encoder.b{r}.conv1.*
    G_synthesis.E.4x4.Conv.0.weight / .1.bias            encoder.b4.conv.*
    G_synthesis.E.4x4.Dense0.*, G_synthesis.G_4x4.Dense.*   encoder.b4.fc.*, synthesis.b4.fc.*
    G_synthesis.G_4x4.Conv.<S>                           synthesis.b4.conv.<ours>
    G_synthesis.G_{r}x{r}.Conv0_up.<S>, .Conv1.<S>       synthesis.b{r}.conv0.<ours>, .conv1.<ours>
    G_synthesis.G_{r}x{r}.ToRGB.<T> (also G_4x4)         synthesis.b{r}.torgb.<ours>
      <S>: conv.weight [1, O, I, k, k] -> weight [O, I, k, k]; conv.modulation.weight -> affine.weight;
           conv.modulation.bias -> affine.bias minus 1; noise.weight [1] -> noise_strength []; activate.bias -> bias
      <T>: conv.weight [1, C, I, 1, 1] -> weight [C, I, 1, 1]; conv.modulation.* as above; bias [1, C, 1, 1] -> bias
    *.kernel (Conv1_down.0, Conv0_up.conv.blur, ToRGB.upsample)   checked against our fixed [1, 3, 3, 1] filters

Conventions, read from the port's code (models/networks/stylegan2.py): its EqualLinear/EqualConv2d/
ModulatedConv2d store unscaled weights and apply 1/sqrt(fan_in) (times lr_mul 0.01 in the mapping, which also
scales the biases) at run time, as ours do, so weights are copied. Its modulation layer adds nothing at run
time: its biases hold the official `mod_bias + 1`, while ours add the 1, hence the minus 1. Its up-sampling
conv runs conv_transpose2d on the stored kernel, as ours does (no flip, unlike the TF pickles). Its `*.kernel`
buffers are the resampling filter (x4 where it up-samples); ours are fixed and not saved, so the file's values
are compared with them and a different filter is refused.

What the file lacks is created and recorded in the snapshot's `conversion` entry:
- noise: the port draws fresh noise on every call and stores none; our const noise (`noise_mode='const'`) is
  drawn N(0, 1) from torch.Generator seed NOISE_SEED, layer by layer in state-dict order. noise_mode='random'
  is what the port computes.
- w average: the port tracks none; its truncation uses the mean of 4,096 mapping outputs of random z
  (`mean_latent(4096)`, unseeded). Ours is estimated the same way with z from torch.Generator seed W_AVG_SEED.

Differences at the call, not in the weights:
- Masks: the port's current code takes 1 = hole (its 2021 branch 1 = known); ours take 1 = known pixel,
  0 = hole. Pass `1 - port_mask`.
- The port's forward omits the official encoder 4x4 skip (the 4x4 feature added before G_4x4/Conv). The weights
  are the official ones and our network is the official one, so with them it computes the official function;
  its completions differ from the port's.
- The port's global-code dropout is off in eval mode; ours too unless `dropout=True` (official inference).
"""

import os
import re

import torch

from converters import mapping_problems
from dnnlib import UserError
from training.checkpoint import SNAPSHOT_FORMAT, SNAPSHOT_KIND_GENERATOR, SNAPSHOT_VERSION, load_weights_only

PORT_REPO = "github.com/zengxianyu/co-mod-gan-pytorch"
NOISE_SEED = 0  # torch.Generator seed of the created const noise
W_AVG_SEED = 0  # torch.Generator seed of the z whose mapping outputs estimate the w average
W_AVG_SAMPLES = 4096  # the port's mean_latent(4096)
MAPPING_LR_MULTIPLIER = 0.01  # the port hard-codes mapping_lrmul = 0.01; a learning rate leaves no trace in shapes
DROPOUT_RATE = 0.5  # the port's default dropout_rate; not in the weights
OFFICIAL_CHANNELS = (16384, 512)  # official fmap_base, fmap_max: preferred when they give the file's widths


class PortImportError(UserError):
    """A port `.pth` file is unreadable, holds more than tensors, or does not match the CoModGAN generator."""


# ----------------------------------------------------------------------------------------------------------------
# Loading.

def load_port_state(source):
    """{key: tensor} of a port state-dict file, read with weights_only=True; `module.` prefixes are dropped.

    Refuses (PortImportError) a file that torch's weights-only unpickler rejects (a pickled object: nothing
    runs), anything but a dict, and any entry that is not a tensor under a string key.
    """
    label = os.fspath(source)
    if not os.path.exists(label):
        raise PortImportError(f"{label}: file not found")
    if os.path.isdir(label):
        raise PortImportError(f"{label}: is a directory, expected a .pth file")
    data = load_weights_only(label, PortImportError, "PyTorch state dict of the port's generator")
    return _check_tensor_dict(data, label)


def _check_tensor_dict(data, label):
    if not isinstance(data, dict):
        raise PortImportError(f"{label}: expected a state dict (a dict of tensors), found {type(data).__name__}")
    if data.get("format") == SNAPSHOT_FORMAT:
        raise PortImportError(f"{label}: this is a comodgan-pytorch snapshot, not a port state dict; "
                              f"name it .pt to load it as one")
    bad = [f"{key!r} ({type(value).__name__})" for key, value in data.items()
           if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    bad += [f"{key!r} ({value.dtype})" for key, value in data.items()
            if isinstance(value, torch.Tensor) and not value.is_floating_point()]
    if bad:
        raise PortImportError(f"{label}: refusing to load: a port generator file holds only float tensors, but "
                              f"{len(bad)} entries are not: " + ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    state = {}
    for key, value in data.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name in state:
            raise PortImportError(f"{label}: {name!r} appears with and without the 'module.' prefix")
        state[name] = value
    return state


# ----------------------------------------------------------------------------------------------------------------
# Shapes -> our Generator kwargs.

def _shape(state, key, label):
    if key not in state:
        raise PortImportError(f"{label}: missing port key {key}; cannot infer the architecture")
    return list(state[key].shape)


def _resolution(state, label):
    found = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(r"G_synthesis\.E\.(\d+)x\1_0\..+", k))})
    if len(found) != 1:
        hint = ""
        if any(k.startswith("convs.") for k in state):
            hint = " (its keys look like the port's discriminator, net_D; use the net_G_ema file)"
        elif any(".ConvDense" in k for k in state):
            hint = " (its keys are the port's conv_enc variant, which is not the CoModGAN architecture)"
        raise PortImportError(f"{label}: expected exactly one encoder input block G_synthesis.E.<R>x<R>_0 of the "
                              f"port's Generator, found {found or 'none'}{hint}")
    return found[0]


def _channels(widths, log2, label):
    """(channel_base, channel_max) whose nf(stage) gives the file's width at every stage 1..log2-1."""
    from training.networks import channels_at

    top = widths[log2 - 1]
    for base, cmax in (OFFICIAL_CHANNELS, (top * 2 ** (log2 - 1), max(widths.values()))):
        if all(channels_at(stage, base, cmax) == w for stage, w in widths.items()):
            return base, cmax
    listed = ", ".join(f"{2 ** (s + 1)}x{2 ** (s + 1)}: {w}" for s, w in sorted(widths.items()))
    raise PortImportError(f"{label}: the encoder widths ({listed}) follow no nf(stage) = "
                          f"clip(channel_base / 2**stage, 1, channel_max)")


def port_generator_kwargs(state, label="<pth>", fp16=False):
    """Our Generator kwargs inferred from the tensor shapes of a port state dict (never from the file name)."""
    from training.networks import NetworkInputError, check_resolution

    resolution = _resolution(state, label)
    try:
        log2 = check_resolution(resolution)
    except NetworkInputError as err:
        raise PortImportError(f"{label}: {err}") from None
    img_channels = _shape(state, f"G_synthesis.E.{resolution}x{resolution}_0.FromRGB.0.weight", label)[1] - 1
    widths = {1: _shape(state, "G_synthesis.E.4x4.Conv.0.weight", label)[0]}
    for r in range(3, log2 + 1):
        widths[r - 1] = _shape(state, f"G_synthesis.E.{2**r}x{2**r}.Conv0.0.weight", label)[0]
    channel_base, channel_max = _channels(widths, log2, label)
    dense = re.compile(r"G_mapping\.G_mapping\.Dense(\d+)\.weight")
    layers = sorted(int(m.group(1)) for k in state if (m := dense.fullmatch(k)))
    if not layers or layers != list(range(len(layers))):
        raise PortImportError(f"{label}: mapping layers G_mapping.G_mapping.Dense<i> must be numbered 0..n-1, "
                              f"found {layers or 'none'}")
    first = _shape(state, "G_mapping.G_mapping.Dense0.weight", label)
    last = _shape(state, f"G_mapping.G_mapping.Dense{layers[-1]}.weight", label)
    return dict(
        z_dim=first[1], w_dim=last[0], img_resolution=resolution, img_channels=img_channels,
        channel_base=channel_base, channel_max=channel_max,
        num_fp16_res=4 if fp16 else 0, conv_clamp=256 if fp16 else None,
        mapping_kwargs=dict(num_layers=len(layers), layer_features=first[0] if len(layers) > 1 else last[0],
                            lr_multiplier=MAPPING_LR_MULTIPLIER, w_avg_beta=0.995),
        dropout_rate=DROPOUT_RATE,
    )


# ----------------------------------------------------------------------------------------------------------------
# Key mapping: our key -> (port key, how the value changes).

# How a port tensor becomes ours: "copy" (same shape), "squeeze" (drop the leading 1 of [1, ...] or reshape
# [1] -> [] and [1, C, 1, 1] -> [C]), "minus1" (modulation bias), "filter1"/"filter4" (checked resampling filter
# with gain 1 or 4, not stored). "created" marks ours that the port has no tensor for.
_STYLED = {"weight": ("conv.weight", "squeeze"), "affine.weight": ("conv.modulation.weight", "copy"),
           "affine.bias": ("conv.modulation.bias", "minus1"), "noise_strength": ("noise.weight", "squeeze"),
           "bias": ("activate.bias", "copy")}
_TORGB = {"weight": ("conv.weight", "squeeze"), "affine.weight": ("conv.modulation.weight", "copy"),
          "affine.bias": ("conv.modulation.bias", "minus1"), "bias": ("bias", "squeeze")}
_CREATED = re.compile(r"mapping\.w_avg|synthesis\.b\d+\.conv[01]?\.noise_const")


def _styled(scope, leaf, up=False):
    if leaf == "resample_filter":
        return (f"{scope}.conv.blur.kernel", "filter4") if up else None
    found = _STYLED.get(leaf)
    return None if found is None else (f"{scope}.{found[0]}", found[1])


def _torgb(scope, leaf):
    found = _TORGB.get(leaf)
    return None if found is None else (f"{scope}.{found[0]}", found[1])


def _encoder_conv(scope, leaf, weight_idx, with_filter=False):
    table = {"weight": f"{scope}.{weight_idx}.weight", "bias": f"{scope}.{weight_idx + 1}.bias"}
    if with_filter:
        table["resample_filter"] = f"{scope}.0.kernel"
    if leaf not in table:
        return None
    return table[leaf], ("filter1" if leaf == "resample_filter" else "copy")


def port_rule(name):
    """(port key, transform) for one of our Generator tensors, "created" for ours the port lacks, or None."""
    if _CREATED.fullmatch(name):
        return "created"
    syn, enc = "G_synthesis.G_{0}x{0}", "G_synthesis.E.{0}x{0}"
    rules = [
        (r"mapping\.fc(\d+)\.(weight|bias)", lambda i, p: (f"G_mapping.G_mapping.Dense{i}.{p}", "copy")),
        (r"encoder\.b(\d+)\.fromrgb\.(.+)", lambda r, leaf: _encoder_conv(f"{enc.format(r)}_0.FromRGB", leaf, 0)),
        (r"encoder\.b4\.conv\.(.+)", lambda leaf: _encoder_conv("G_synthesis.E.4x4.Conv", leaf, 0)),
        (r"encoder\.b4\.fc\.(weight|bias)", lambda p: (f"G_synthesis.E.4x4.Dense0.{p}", "copy")),
        (r"encoder\.b(\d+)\.conv0\.(.+)", lambda r, leaf: _encoder_conv(f"{enc.format(r)}.Conv0", leaf, 0)),
        (r"encoder\.b(\d+)\.conv1\.(.+)",
         lambda r, leaf: _encoder_conv(f"{enc.format(r)}.Conv1_down", leaf, 1, with_filter=True)),
        (r"synthesis\.b4\.fc\.(weight|bias)", lambda p: (f"G_synthesis.G_4x4.Dense.{p}", "copy")),
        (r"synthesis\.b4\.conv\.(.+)", lambda leaf: _styled("G_synthesis.G_4x4.Conv", leaf)),
        (r"synthesis\.b(\d+)\.conv0\.(.+)", lambda r, leaf: _styled(f"{syn.format(r)}.Conv0_up", leaf, up=True)),
        (r"synthesis\.b(\d+)\.conv1\.(.+)", lambda r, leaf: _styled(f"{syn.format(r)}.Conv1", leaf)),
        (r"synthesis\.b(\d+)\.torgb\.(.+)", lambda r, leaf: _torgb(f"{syn.format(r)}.ToRGB", leaf)),
        (r"synthesis\.b(\d+)\.resample_filter", lambda r: (f"{syn.format(r)}.ToRGB.upsample.kernel", "filter4")),
    ]
    for pattern, fn in rules:
        match = re.fullmatch(pattern, name)
        if match:
            return fn(*match.groups())
    return None


def _port_shape(ours_shape, transform):
    """The shape the port stores for one of ours under `transform`."""
    if transform == "squeeze":
        if len(ours_shape) == 0:
            return [1]  # noise strength
        if len(ours_shape) == 1:
            return [1, ours_shape[0], 1, 1]  # to-RGB bias
        return [1, *ours_shape]  # styled-conv weight
    return list(ours_shape)


def _targets(G):
    """Our tensors to fill: every state_dict entry, plus the resampling filters that layers actually use
    (not saved by us, saved by the port, so they are checked)."""
    out = dict(G.state_dict())
    for name, buf in G.named_buffers():
        if name.endswith("resample_filter") and name not in out:
            out[name] = buf
    return out


def convert_port_state(G, port_state, label="<pth>"):
    """Map every port key to exactly one of G's tensors; returns (state dict without the created tensors,
    {created key: reference tensor}).

    Raises PortImportError naming every missing port key, every unknown one, every shape mismatch, every
    resampling filter that differs from ours and every one of our tensors that no rule covers.
    """
    state, created, used = {}, {}, {}
    missing, mismatched, uncovered, reused, filters = [], [], [], [], []
    persistent = set(G.state_dict())
    for name, ref in _targets(G).items():
        rule = port_rule(name)
        if rule == "created":
            created[name] = ref
            continue
        if rule is None:
            if name in persistent:
                uncovered.append(name)
            continue  # a resampling filter that its layer never uses (no resampling there)
        key, transform = rule
        if key in used:
            reused.append(f"{key} (for {used[key]} and {name})")
            continue
        if key not in port_state:
            missing.append(f"{key} (for {name} {list(ref.shape)})")
            continue
        used[key] = name
        value = port_state[key].detach().to(torch.float32)
        expected = _port_shape(list(ref.shape), transform)
        if list(value.shape) != expected:
            mismatched.append(f"{key} {list(value.shape)} -> {name} needs {expected}")
            continue
        if transform.startswith("filter"):
            gain = 4.0 if transform == "filter4" else 1.0
            if not torch.allclose(value, ref.float() * gain, rtol=1e-5, atol=1e-7):
                filters.append(f"{key} (expected the [1, 3, 3, 1] filter with gain {gain:g})")
            continue
        value = value.reshape(ref.shape)
        if transform == "minus1":
            value = value - 1  # the port stores the official mod_bias + 1; ours adds the 1 at run time
        state[name] = value.contiguous()  # shares storage with the loaded file: no second copy of the weights
    unknown = sorted(set(port_state) - set(used))
    problems = mapping_problems.describe((
        ("missing port keys", missing), ("unknown port keys", unknown), ("shape mismatches", mismatched),
        ("resampling filters that differ from ours", filters), ("our parameters without a port key", uncovered),
        ("port keys claimed twice", reused)))
    if problems:
        raise PortImportError(f"{label}: the file does not match the CoModGAN generator: {problems}")
    return state, created


# ----------------------------------------------------------------------------------------------------------------
# What the port lacks.

def make_const_noise(created):
    """Our const-noise buffers, N(0, 1) from torch.Generator seed NOISE_SEED in state-dict order."""
    gen = torch.Generator().manual_seed(NOISE_SEED)
    return {name: torch.randn(list(ref.shape), generator=gen)
            for name, ref in created.items() if name.endswith("noise_const")}


@torch.no_grad()
def estimate_w_avg(mapping, z_dim, samples=W_AVG_SAMPLES, seed=W_AVG_SEED):
    """Mean of mapping(z) over `samples` z ~ N(0, I) drawn from torch.Generator `seed` (the port's mean_latent)."""
    z = torch.randn([samples, z_dim], generator=torch.Generator().manual_seed(seed))
    return mapping(z)[:, 0].mean(dim=0)


def _conversion_record(label):
    return {
        "source": f"{label}: a Generator state dict of the PyTorch port ({PORT_REPO})",
        "absent": "G, D and optimizer states: the file holds only G_ema, so training cannot resume from this "
                  "snapshot",
        "noise_const": f"created: N(0, 1) from torch.Generator seed {NOISE_SEED}, layer by layer in state-dict "
                       f"order (the port stores no noise and draws fresh noise on every call)",
        "w_avg": f"estimated: mean of the mapping outputs of {W_AVG_SAMPLES} z ~ N(0, I) from torch.Generator seed "
                 f"{W_AVG_SEED}, as the port's mean_latent({W_AVG_SAMPLES}) (the port tracks none)",
        "mask": "the port's masks are 1 = hole; ours 1 = known, so pass 1 - port_mask (same weights)",
    }


def convert_port_pth(source, fp16=False):
    """A port `*_net_G_ema.pth` -> snapshot dict of kind 'generator' (G_kwargs, G_ema; no G, no D).

    `fp16=True` lets the highest 4 resolutions run in float16 on CUDA; the default keeps float32 everywhere.
    """
    from training.networks import Generator  # The loader part of this module works without the networks.

    label = os.fspath(source)
    port_state = load_port_state(source)
    kwargs = port_generator_kwargs(port_state, label, fp16=fp16)
    G = Generator(**kwargs)
    state, created = convert_port_state(G, port_state, label)
    state.update(make_const_noise(created))
    state["mapping.w_avg"] = torch.zeros(G.w_dim)
    G.load_state_dict(state)
    state["mapping.w_avg"] = estimate_w_avg(G.mapping, G.z_dim)
    return {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "kind": SNAPSHOT_KIND_GENERATOR,
            "G_kwargs": kwargs, "G_ema": state, "imported_from": label, "conversion": _conversion_record(label)}
