"""Import of the PyTorch port's `*_net_G_ema.pth` generators: exact mapping, the port's layer numerics, shape
inference, safety, the generator-only snapshot (no resume) and the CLIs that take a .pth."""

import os
import pickle

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from close_helpers import assert_rel_close
from port_state_dict_maker import make_port_state_dict, port_generator_keys

import generate
import train
from converters.port_pth import (
    NOISE_SEED,
    W_AVG_SAMPLES,
    W_AVG_SEED,
    PortImportError,
    convert_port_pth,
    load_port_state,
    port_generator_kwargs,
)
from inference.loading import load_generator
from legacy import main as legacy_main
from training.checkpoint import CheckpointError, load_snapshot, save_snapshot
from training.networks import Generator
from training.training_loop import check_resume

RES = 32
SMALL = dict(fmap_base=128, fmap_max=16, latent_size=32, dlatent_size=32, mapping_fmaps=32)
# A name that says 512: the resolution must come from the shapes.
FILE_NAME = "co-mod-gan-ffhq-9-025000_net_G_ema.pth"


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    """A small port-shaped state dict, its file and its conversion."""
    state = make_port_state_dict(RES, seed=0, **SMALL)
    path = tmp_path_factory.mktemp("port") / FILE_NAME
    torch.save(state, path)
    return dict(state=state, path=path, snapshot=convert_port_pth(path))


@pytest.fixture(scope="module")
def converted_G(port):
    G = Generator(**port["snapshot"]["G_kwargs"]).eval()
    G.load_state_dict(port["snapshot"]["G_ema"])
    return G


# ----------------------------------------------------------------------------------------------------------------
# Structure and shapes.

def test_helper_has_the_published_parameter_count_and_official_kwargs():
    keys = port_generator_keys(512)
    assert sum(int(np.prod(shape)) for _, shape, role in keys if not role.startswith("kernel")) == 79_792_231
    meta = {key: torch.empty(shape, device="meta") for key, shape, _ in keys}  # shapes only, no memory
    kw = port_generator_kwargs(meta)
    assert (kw["img_resolution"], kw["channel_base"], kw["channel_max"], kw["z_dim"], kw["w_dim"]) == (
        512, 16384, 512, 512, 512)
    assert kw["mapping_kwargs"]["num_layers"] == 8 and kw["mapping_kwargs"]["lr_multiplier"] == 0.01


def test_kwargs_come_from_the_shapes_not_the_file_name(port):
    kw = port["snapshot"]["G_kwargs"]
    assert (kw["img_resolution"], kw["channel_base"], kw["channel_max"], kw["z_dim"], kw["w_dim"]) == (
        RES, 128, 16, 32, 32)
    assert kw["mapping_kwargs"]["layer_features"] == 32 and kw["img_channels"] == 3
    assert (kw["num_fp16_res"], kw["conv_clamp"]) == (0, None)
    wide = make_port_state_dict(64, fmap_base=512, fmap_max=32, latent_size=16, dlatent_size=24, mapping_fmaps=8,
                                mapping_layers=3)
    kw = port_generator_kwargs(wide)
    assert (kw["img_resolution"], kw["channel_base"], kw["channel_max"], kw["z_dim"], kw["w_dim"]) == (
        64, 512, 32, 16, 24)
    assert kw["mapping_kwargs"]["num_layers"] == 3 and kw["mapping_kwargs"]["layer_features"] == 8


def test_every_port_key_assigned_exactly_once(port):
    snap, state = port["snapshot"], port["state"]
    ref = Generator(**snap["G_kwargs"]).state_dict()
    ours = snap["G_ema"]
    assert set(ours) == set(ref)
    for name, tensor in ours.items():
        assert tensor.shape == ref[name].shape, name
        assert tensor.dtype == torch.float32 and tensor.is_contiguous()
    created = {n for n in ours if n.endswith("noise_const") or n == "mapping.w_avg"}
    mod_bias = {n for n in ours if n.endswith("affine.bias")}
    # The port's values are distinct random numbers, so equal multisets mean each landed in exactly one place.
    def values(names, offset=0.0):
        return np.sort(np.concatenate([ours[n].double().numpy().ravel() + offset for n in sorted(names)]))
    def port_values(pattern):
        return np.sort(np.concatenate([v.double().numpy().ravel() for k, v in state.items() if pattern(k)]))
    plain = set(ours) - created - mod_bias
    np.testing.assert_array_equal(values(plain), port_values(
        lambda k: not k.endswith(".kernel") and not k.endswith("modulation.bias")).astype(np.float32))
    # Modulation biases: the port stores the official mod_bias + 1; ours add the 1 at run time.
    np.testing.assert_allclose(values(mod_bias, offset=1.0), port_values(lambda k: k.endswith("modulation.bias")),
                               rtol=0, atol=1e-6)
    assert len(plain) + len(mod_bias) == sum(not k.endswith(".kernel") for k in state)
    # 3 kernels per resolution r >= 8 (Conv1_down blur, Conv0_up blur, ToRGB upsample): each checked, none stored.
    assert sum(k.endswith(".kernel") for k in state) == 3 * (int(np.log2(RES)) - 2)


def test_snapshot_says_what_is_absent_and_how_noise_and_w_avg_were_made(port, converted_G):
    snap = port["snapshot"]
    assert snap["kind"] == "generator" and not {"G", "D", "D_kwargs"} & set(snap)
    assert "training cannot resume" in snap["conversion"]["absent"]
    assert f"seed {NOISE_SEED}" in snap["conversion"]["noise_const"]
    assert f"{W_AVG_SAMPLES}" in snap["conversion"]["w_avg"] and "1 = hole" in snap["conversion"]["mask"]
    # Const noise is reproducible: N(0, 1) from the documented seed, layer by layer in state-dict order.
    gen = torch.Generator().manual_seed(NOISE_SEED)
    for name, tensor in snap["G_ema"].items():
        if name.endswith("noise_const"):
            assert torch.equal(tensor, torch.randn(list(tensor.shape), generator=gen)), name
    assert torch.equal(convert_port_pth(port["path"])["G_ema"]["mapping.w_avg"], snap["G_ema"]["mapping.w_avg"])


# ----------------------------------------------------------------------------------------------------------------
# NumPy implementation of the port's layer semantics (models/networks/stylegan2.py), from its definitions.

def np_fused_lrelu(x, bias):
    """FusedLeakyReLU: leaky_relu(x + bias, 0.2) * sqrt(2), bias over dim 1."""
    x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    return np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)


def np_equal_linear(x, weight, bias, lr_mul=1.0, activation=False):
    """EqualLinear: F.linear with weight * lr_mul / sqrt(in); bias * lr_mul inside the fused lrelu or added."""
    y = x @ (weight * (lr_mul / np.sqrt(weight.shape[1]))).T
    return np_fused_lrelu(y, bias * lr_mul) if activation else y + bias * lr_mul


def np_upfirdn2d(x, kernel, up=1, pad=(0, 0)):
    """upfirdn2d: insert up-1 zeros after each pixel, pad (pad0, pad1) on both axes, true convolution."""
    n, c, h, w = x.shape
    z = np.zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    z = np.pad(z, ((0, 0), (0, 0), pad, pad))
    k = kernel[::-1, ::-1]  # convolution, not correlation
    kh = k.shape[0]
    oh, ow = z.shape[2] - kh + 1, z.shape[3] - kh + 1
    out = np.zeros([n, c, oh, ow])
    for a in range(kh):
        for b in range(kh):
            out += z[:, :, a:a + oh, b:b + ow] * k[a, b]
    return out


def np_modulated_conv(x, style, p, prefix, demodulate=True, upsample=False):
    """ModulatedConv2d: style = modulation(style) (its bias, no +1); weight [1, O, I, k, k] * 1/sqrt(I k k)
    * style; demodulated; up-sampling = conv_transpose2d (stride 2, no padding) then Blur(pad (1, 1))."""
    s = np_equal_linear(style, p[f"{prefix}.modulation.weight"], p[f"{prefix}.modulation.bias"])  # [N, I]
    weight = p[f"{prefix}.weight"]
    _, o, i, k, _ = weight.shape
    w = weight / np.sqrt(i * k * k) * s[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        w = w / np.sqrt((w ** 2).sum(axis=(2, 3, 4)) + 1e-8)[:, :, None, None, None]
    n, _, h, wd = x.shape
    if upsample:
        out = np.zeros([n, o, 2 * h + k - 2, 2 * wd + k - 2])
        for a in range(k):
            for b in range(k):  # conv_transpose2d: out[2y + a, 2x + b] += x[y, x] * w[a, b], no flip
                out[:, :, a:a + 2 * h - 1:2, b:b + 2 * wd - 1:2] += np.einsum("nihw,noi->nohw", x, w[:, :, :, a, b])
        return np_upfirdn2d(out, p[f"{prefix}.blur.kernel"], pad=(1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    out = np.zeros([n, o, h, wd])
    for a in range(k):
        for b in range(k):  # F.conv2d: cross-correlation
            out += np.einsum("nihw,noi->nohw", xp[:, :, a:a + h, b:b + wd], w[:, :, :, a, b])
    return out


def np_styled_conv(x, style, noise, p, prefix, upsample=False):
    """StyledConv: modulated conv, + noise.weight * noise (NoiseInjection), FusedLeakyReLU(activate.bias)."""
    y = np_modulated_conv(x, style, p, f"{prefix}.conv", upsample=upsample)
    return np_fused_lrelu(y + p[f"{prefix}.noise.weight"] * noise, p[f"{prefix}.activate.bias"])


def np_to_rgb(x, style, skip, p, prefix):
    """ToRGB: modulated 1x1 conv without demodulation, + bias [1, C, 1, 1], + Upsample(skip) (pad (2, 1))."""
    y = np_modulated_conv(x, style, p, f"{prefix}.conv", demodulate=False) + p[f"{prefix}.bias"]
    return y + np_upfirdn2d(skip, p[f"{prefix}.upsample.kernel"], up=2, pad=(2, 1))


def _p64(state):
    return {k: v.double().numpy() for k, v in state.items()}


def test_mapping_dense_layer_matches_the_port(port, converted_G):
    p = _p64(port["state"])
    z = np.random.default_rng(1).normal(size=[3, 32])
    ours = converted_G.mapping.fc0(torch.from_numpy(z).float())
    assert_rel_close(ours, np_equal_linear(z, p["G_mapping.G_mapping.Dense0.weight"],
                                           p["G_mapping.G_mapping.Dense0.bias"], lr_mul=0.01, activation=True))


def test_w_avg_is_the_ports_mean_latent_with_a_fixed_seed(port):
    p = _p64(port["state"])
    z = torch.randn([W_AVG_SAMPLES, 32], generator=torch.Generator().manual_seed(W_AVG_SEED)).double().numpy()
    x = z / np.sqrt((z ** 2).mean(axis=1, keepdims=True) + 1e-8)  # PixelNorm
    for i in range(8):
        x = np_equal_linear(x, p[f"G_mapping.G_mapping.Dense{i}.weight"], p[f"G_mapping.G_mapping.Dense{i}.bias"],
                            lr_mul=0.01, activation=True)
    assert_rel_close(port["snapshot"]["G_ema"]["mapping.w_avg"], x.mean(axis=0))


@pytest.mark.parametrize("layer, scope, up", [("conv0", "Conv0_up", True), ("conv1", "Conv1", False)])
def test_modulated_conv_matches_the_port(port, converted_G, layer, scope, up):
    p = _p64(port["state"])
    module = getattr(converted_G.synthesis.b16, layer)
    rng = np.random.default_rng(2)
    x = rng.normal(size=[2, module.in_channels, 8 if up else 16, 8 if up else 16])
    mod = rng.normal(size=[2, 32 + 32])  # concat([w_i, global code]): w 32 + 2 * nf(1) = 32
    noise = module.noise_const.double().numpy()  # the port draws noise per call; feed both the same one
    theirs = np_styled_conv(x, mod, noise, p, f"G_synthesis.G_16x16.{scope}", upsample=up)
    with torch.no_grad():
        ours = module(torch.from_numpy(x).float(), torch.from_numpy(mod).float(), noise_mode="const")
    assert_rel_close(ours, theirs)


def test_to_rgb_with_its_skip_matches_the_port(port, converted_G):
    from torch_utils.ops import upfirdn2d

    p = _p64(port["state"])
    block = converted_G.synthesis.b16
    rng = np.random.default_rng(3)
    x, mod, skip = rng.normal(size=[2, 16, 16, 16]), rng.normal(size=[2, 64]), rng.normal(size=[2, 3, 8, 8])
    theirs = np_to_rgb(x, mod, skip, p, "G_synthesis.G_16x16.ToRGB")
    with torch.no_grad():
        ours = block.torgb(torch.from_numpy(x).float(), torch.from_numpy(mod).float())
        ours = ours + upfirdn2d.upsample2d(torch.from_numpy(skip).float(), block.resample_filter)
    assert_rel_close(ours, theirs)


# ----------------------------------------------------------------------------------------------------------------
# Safety and named errors.

class _WritesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_pickled_object_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "reduce_ran"
    path = tmp_path / "evil_net_G_ema.pth"
    state = make_port_state_dict(RES, **SMALL)
    state["G_synthesis.G_4x4.Dense.bias"] = _WritesAFile(str(marker))
    torch.save(state, path)
    assert not marker.exists()
    with pytest.raises(PortImportError, match=r"refusing to load: the file holds a pickled object \(io\.open\)"):
        load_port_state(path)
    plain = tmp_path / "plain_pickle.pth"  # pickle.dump, not torch.save: refused as well
    plain.write_bytes(pickle.dumps({"w": _WritesAFile(str(marker))}, protocol=2))
    with pytest.raises(PortImportError, match=r"refusing to load.*io\.open.*nothing from the file ran"):
        load_port_state(plain)
    with pytest.raises(PortImportError, match="refusing to load"):
        load_generator(path)
    result = CliRunner().invoke(legacy_main, ["--source", str(path), "--dest", str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and "refusing to load" in result.output and "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "x.pt").exists()


def test_non_tensors_and_a_module_prefix(tmp_path, port):
    path = tmp_path / "extra.pth"
    torch.save(dict(port["state"], step=3, note="hi", count=torch.tensor(1)), path)
    with pytest.raises(PortImportError, match=r"3 entries are not: 'step' \(int\), 'note' \(str\), 'count' "
                                              r"\(torch.int64\)"):
        load_port_state(path)
    torch.save([1, 2], path)
    with pytest.raises(PortImportError, match="expected a state dict"):
        load_port_state(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(PortImportError, match="refusing to load: not a state dict that weights-only loading accepts"):
        load_port_state(path)
    path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(PortImportError, match="not a readable PyTorch state dict"):
        load_port_state(path)
    path.write_bytes(b"hello\n")  # torch's unpickler raised a bare KeyError: 101 on this
    with pytest.raises(PortImportError, match="extra.pth: not a PyTorch state dict of the port's generator") as info:
        load_port_state(path)
    assert "\n" not in str(info.value)
    prefixed = tmp_path / "dataparallel.pth"
    torch.save({f"module.{k}": v for k, v in port["state"].items()}, prefixed)
    snap = convert_port_pth(prefixed)
    assert all(torch.equal(snap["G_ema"][k], v) for k, v in port["snapshot"]["G_ema"].items())


def test_missing_unknown_and_wrong_keys_are_named(tmp_path, port):
    state = dict(port["state"])
    del state["G_synthesis.G_8x8.Conv1.noise.weight"]
    state["G_synthesis.G_8x8.Extra.weight"] = torch.zeros(2)
    state["G_synthesis.G_16x16.Conv0_up.conv.blur.kernel"] = state["G_synthesis.G_16x16.Conv0_up.conv.blur.kernel"] / 4
    state["G_synthesis.G_32x32.ToRGB.bias"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(PortImportError) as info:
        convert_port_pth(path)
    msg = str(info.value)
    assert "missing port keys (1): G_synthesis.G_8x8.Conv1.noise.weight (for synthesis.b8.conv1.noise_strength" in msg
    assert "unknown port keys (1): G_synthesis.G_8x8.Extra.weight" in msg
    assert "G_synthesis.G_16x16.Conv0_up.conv.blur.kernel (expected the [1, 3, 3, 1] filter with gain 4)" in msg
    assert "G_synthesis.G_32x32.ToRGB.bias [3] -> synthesis.b32.torgb.bias needs [1, 3, 1, 1]" in msg
    torch.save({"convs.ToRGB.0.weight": torch.zeros(1)}, path)
    with pytest.raises(PortImportError, match="discriminator"):
        convert_port_pth(path)


# ----------------------------------------------------------------------------------------------------------------
# The generator-only snapshot and the command lines.

def test_legacy_converts_and_training_refuses_to_resume(tmp_path, port):
    dest = tmp_path / "ffhq.pt"
    result = CliRunner().invoke(legacy_main, ["--source", str(port["path"]), "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    assert "G_ema only; G and D are absent, so training cannot resume" in result.output
    raw = torch.load(dest, weights_only=True)
    assert raw["kind"] == "generator" and "training cannot resume" in raw["conversion"]["absent"]
    snap = load_snapshot(dest)
    assert all(torch.equal(snap["G_ema"][k], v) for k, v in port["snapshot"]["G_ema"].items())
    with pytest.raises(CheckpointError, match="G and D are absent, so training cannot resume"):
        check_resume(None, str(dest))
    with pytest.raises(CheckpointError, match="holds only G_ema"):
        load_generator(dest, ema=False)
    from test_training import make_zip
    data = make_zip(tmp_path / "tiny.zip")
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "tiny",
                                             "--device", "cpu", "--resume", str(dest), "--dry-run"])
    assert result.exit_code == 2 and "training cannot resume from it" in result.stderr, result.output
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "tiny",
                                             "--device", "cpu", "--resume", str(port["path"]), "--dry-run"])
    assert result.exit_code == 2 and "the PyTorch port's generator (G_ema only" in result.stderr, result.output


def test_snapshot_kinds(tmp_path):
    path = tmp_path / "odd.pt"
    save_snapshot(path, {"kind": "weird", "G_kwargs": {}, "G_ema": {}})
    with pytest.raises(CheckpointError, match="snapshot kind 'weird' is not supported"):
        load_snapshot(path)
    save_snapshot(path, {"kind": "generator", "G_kwargs": {}})
    with pytest.raises(CheckpointError, match="snapshot lacks G_ema"):
        load_snapshot(path)
    # Written before the kind field existed: a training snapshot, which must hold G and D too.
    save_snapshot(path, {"G_kwargs": {}, "D_kwargs": {}, "G": {}, "G_ema": {}, "D": {}})
    assert "kind" not in load_snapshot(path)
    save_snapshot(path, {"G_kwargs": {}, "D_kwargs": {}, "G": {}, "G_ema": {}})
    with pytest.raises(CheckpointError, match="snapshot lacks D$"):
        load_snapshot(path)


def test_pth_works_directly_with_generate(tmp_path, port, converted_G):
    G = load_generator(port["path"], "cpu")
    assert all(torch.equal(G.state_dict()[k], v) for k, v in converted_G.state_dict().items())
    rng = np.random.default_rng(0)
    PIL.Image.fromarray(rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8)).save(tmp_path / "face.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(generate.main, ["--network", str(port["path"]), "--images", str(tmp_path / "face.png"),
                                                "--masks", "center", "--seeds", "0", "--outdir", str(out),
                                                "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "face-seed0000.png" in os.listdir(out)
