"""The paper's ablations (official G_synthesis_co_mod_gan `style_mod` / `cond_mod`; run_training.py
--disable-style-mod / --disable-cond-mod): what each switch removes, their parameter counts at 512, training,
snapshots and every loader, the official pickle converter and the fast CPU path."""

import json
import os
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from official_reference import G_main
from PIL import Image
from skimage.data import lfw_subset
from tf_pickle_maker import dumps_official, make_official_states, official_variables, trainable_count, variables_of

import generate
import legacy
import train
from converters.tf_pickle import TFImportError, convert_tf_pickle
from inference import fast_path
from inference.loading import load_generator
from training import checkpoint
from training.networks import Generator, NetworkInputError, count_params
from training.training_loop import launch

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

VARIANTS = {"full": dict(style_mod=True, cond_mod=True), "no-style-mod": dict(style_mod=False, cond_mod=True),
            "no-cond-mod": dict(style_mod=True, cond_mod=False)}
SMALL = dict(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=16, num_fp16_res=0,
             conv_clamp=None, mapping_kwargs=dict(num_layers=2))

# Trainable parameters of G at 512 (3 channels, official defaults). The full count is the published one; the
# ablations change only the input width of the modulation affines (mod_weight [mod, in] of every modulated conv
# and ToRGB: mod = 512 (w) + 1024 (global code, 2 * nf(1)) = 1536 with both parts). The 23 modulated layers take
# in-widths nf(stage): G_4x4 Conv and ToRGB 512 + 512; G_8..G_64 (Conv0_up, Conv1, ToRGB) 4 x 3 x 512; G_128
# 512 + 256 + 256; G_256 256 + 128 + 128; G_512 128 + 64 + 64; in all S = 8,960 (checked below from the shapes).
# The mapping network stays in both ablations, as the official G_main builds it whatever style_mod says.
#   no style mod: mod = 1024, so 79,792,231 - 512 * 8,960 = 79,792,231 - 4,587,520 = 75,204,711
#   no cond mod:  mod = 512,  so 79,792,231 - 1024 * 8,960 = 79,792,231 - 9,175,040 = 70,617,191
MOD_IN_WIDTHS_512 = 8_960
G_PARAMS_512 = {"full": 79_792_231, "no-style-mod": 75_204_711, "no-cond-mod": 70_617_191}


# ----------------------------------------------------------------------------------------------------------------
# Parameter counts and the refused combination.

@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parameter_counts_at_512_follow_the_official_shapes(variant):
    flags = VARIANTS[variant]
    names = official_variables(512, **flags)
    official = sum(trainable_count(names[key]) for key in ("G", "G/mapping", "G/synthesis"))
    assert official == G_PARAMS_512[variant]
    G = Generator(img_resolution=512, **flags)
    assert count_params(G) == G_PARAMS_512[variant]
    assert count_params(G.mapping) == 2_101_248  # kept in every variant
    affines = [p for n, p in G.named_parameters() if n.endswith("affine.weight")]  # [in-width, mod]
    assert len(affines) == 23 and sum(p.shape[0] for p in affines) == MOD_IN_WIDTHS_512
    assert {p.shape[1] for p in affines} == {512 * flags["style_mod"] + 1024 * flags["cond_mod"]}


def test_neither_switch_is_a_named_error(tmp_path):
    with pytest.raises(NetworkInputError, match="style_mod and cond_mod are both off"):
        Generator(**SMALL, style_mod=False, cond_mod=False)
    with pytest.raises(NetworkInputError, match="style_mod: must be True or False"):
        Generator(**SMALL, style_mod="no")
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "runs"), "--data", str(tmp_path / "none"),
                                             "--cfg", "tiny", "--no-style-mod", "--no-cond-mod", "--dry-run"])
    assert result.exit_code == 2
    assert "--no-style-mod with --no-cond-mod" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "runs"), "--data", str(tmp_path / "none"),
                                             "--cfg", "tiny", "--no-style-mod", "--pl-weight", "2", "--dry-run"])
    assert result.exit_code == 2 and "--pl-weight 2 with --no-style-mod" in result.output


# ----------------------------------------------------------------------------------------------------------------
# What each switch removes.

def _small(seed=0, **flags):
    torch.manual_seed(seed)
    G = Generator(**SMALL, **flags).eval()
    with torch.no_grad():  # non-zero noise strengths and biases, as in a trained G
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or name.endswith("bias"):
                p.normal_(0, 0.3)
    return G


def _inputs(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand([n, 3, 32, 32], generator=gen) * 2 - 1
    mask = torch.ones([n, 1, 32, 32])
    mask[:, :, 8:24, 4:20] = 0
    return img, mask


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_without_style_mod_z_changes_nothing(variant):
    G = _small(**VARIANTS[variant])
    img, mask = _inputs()
    z1, z2 = torch.randn([2, 16]), torch.randn([2, 16])
    with torch.no_grad():
        out1, out2 = (G(img, mask, z, noise_mode="const", dropout=False, impl="ref") for z in (z1, z2))
        ws = G.mapping(z1)
        out3 = G(img, mask, ws=ws * 3 + 1, noise_mode="const", dropout=False, impl="ref")
    if VARIANTS[variant]["style_mod"]:
        assert (out1 - out2).abs().max() > 1e-3 and (out1 - out3).abs().max() > 1e-3
    else:
        assert torch.equal(out1, out2) and torch.equal(out1, out3)
    assert torch.equal(out1 * mask, img * mask)  # known pixels pass through in every variant


def _code_gradient(G, zero_dense):
    """d output / d global code through the synthesis; `zero_dense` zeroes G_4x4/Dense's weight, the one place
    besides the modulation where the official synthesis reads the global code (x = dense(x_global) at 4x4)."""
    img, mask = _inputs()
    if zero_dense:
        with torch.no_grad():
            G.synthesis.b4.fc.weight.zero_()
    code, feats = G.encoder(img, mask)
    code = code.detach().requires_grad_(True)
    ws = G.mapping(torch.randn([2, 16]))
    out = G.synthesis(ws, code, feats, noise_mode="const")
    (grad,) = torch.autograd.grad(out.square().sum(), [code])
    return grad


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_without_cond_mod_the_global_code_does_not_modulate(variant):
    flags = VARIANTS[variant]
    through_dense = _code_gradient(_small(**flags), zero_dense=False)
    assert through_dense.abs().max() > 0  # the 4x4 dense input reads the code in every variant, as officially
    through_modulation = _code_gradient(_small(**flags), zero_dense=True)
    if flags["cond_mod"]:
        assert through_modulation.abs().max() > 1e-4
    else:
        assert torch.count_nonzero(through_modulation) == 0


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_without_style_mod_no_gradient_reaches_w(variant):
    flags = VARIANTS[variant]
    G = _small(**flags)
    img, mask = _inputs()
    ws = G.mapping(torch.randn([2, 16])).detach().requires_grad_(True)
    out = G(img, mask, ws=ws, noise_mode="const", dropout=False)
    (grad,) = torch.autograd.grad(out.square().sum(), [ws], allow_unused=True)
    if flags["style_mod"]:
        assert grad is not None and grad.abs().max() > 1e-4
    else:
        assert grad is None or torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_path_runs_every_variant_and_matches_the_reference(variant, monkeypatch):
    G = fast_path.attach(_small(**VARIANTS[variant]))
    calls = []
    real = fast_path.synthesize
    monkeypatch.setattr(fast_path, "synthesize", lambda *a, **k: calls.append(1) or real(*a, **k))
    img, mask = _inputs(3)
    z = torch.randn([3, 16])
    outs = []
    for impl in ("ref", "fast"):
        with torch.no_grad():
            outs.append(G(img, mask, z, noise_mode="const", impl=impl))
    assert calls == [1]  # the fast path itself ran, not a fallback
    assert (outs[0] - outs[1]).abs().max() <= 1e-4


# ----------------------------------------------------------------------------------------------------------------
# Training, snapshots and the loaders.

def _zip(path, count=4):
    faces = lfw_subset()[:count]
    with zipfile.ZipFile(path, "w") as zf:
        for i, face in enumerate(faces):
            img = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").resize((32, 32), Image.BICUBIC)
            with zf.open(f"img{i:04d}.png", "w") as f:
                img.save(f, format="png")
    return str(path)


MICRO = dict(G_kwargs=dict(SMALL, img_channels=3), d_reg_interval=1, grid=[2, 1],
             D_kwargs=dict(img_channels=3, channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None))


def _opts(tmp_path, data, **kw):
    opts = dict(outdir=str(tmp_path / "runs"), data=data, mask="center", cfg="tiny", batch=2, batch_gpu=2,
                kimg=0.002, tick_kimg=0.002, snap=1, workers=0, device="cpu", seed=1, metrics="none")
    opts.update(kw)
    return opts


@pytest.fixture(scope="module")
def data_zip(tmp_path_factory):
    return _zip(tmp_path_factory.mktemp("faces") / "faces.zip")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_trains_saves_loads_and_generates(variant, data_zip, tmp_path):
    flags = VARIANTS[variant]
    run = launch(_opts(tmp_path, data_zip, **flags), overrides=MICRO)
    suffix = "".join(f"-no{key[:-4]}mod" for key, on in flags.items() if not on)
    assert run.snapshot and os.path.basename(run.run_dir).endswith("-gamma0.2" + suffix)
    assert all(np.isfinite(p.detach().numpy()).all() for p in run.state.G.parameters())
    options = json.load(open(os.path.join(run.run_dir, "training_options.json")))
    raw = checkpoint.load_snapshot(run.snapshot)
    for key, value in flags.items():
        assert options["G_kwargs"][key] is value and raw["G_kwargs"][key] is value
    # The mapping gets zero gradients without style mod (official: disconnected => zero), so Adam leaves it be.
    torch.manual_seed(1)  # the run's seed: build_state draws G's initial weights right after seeding with it
    init = Generator(**raw["G_kwargs"])
    moved = any(not torch.equal(init.state_dict()[k], raw["G"][k]) for k in raw["G"] if k.startswith("mapping.fc"))
    assert moved == flags["style_mod"]

    for ema in (True, False):
        G = load_generator(run.snapshot, "cpu", ema=ema)
        assert (G.synthesis.style_mod, G.synthesis.cond_mod) == (flags["style_mod"], flags["cond_mod"])
        torch.testing.assert_close(G.state_dict(), raw["G_ema" if ema else "G"], rtol=0, atol=0)

    face = tmp_path / "face.png"
    with zipfile.ZipFile(data_zip) as zf:
        face.write_bytes(zf.read("img0000.png"))
    out = tmp_path / "out"
    result = CliRunner().invoke(generate.main, ["--network", run.snapshot, "--images", str(face), "--masks", "center",
                                                "--seeds", "0,1", "--outdir", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    seeds = [np.asarray(Image.open(out / f"face-seed{s:04d}.png")) for s in (0, 1)]
    # Noise const and no dropout (generate.py's defaults): without style mod the seed has nothing to change.
    assert np.array_equal(seeds[0], seeds[1]) == (not flags["style_mod"])
    assert ("every seed gives the same completion" in result.output) == (not flags["style_mod"])

    # A resume has to name the variant: another variant is refused before training, the same one goes on.
    other = VARIANTS["no-style-mod" if variant == "full" else "full"]
    with pytest.raises(checkpoint.UserError, match="--style-mod/--cond-mod"):
        launch(_opts(tmp_path, data_zip, resume="latest", kimg=0.004, **other), overrides=MICRO, dry_run=True)
    assert launch(_opts(tmp_path, data_zip, resume="latest", kimg=0.004, **flags), overrides=MICRO,
                  dry_run=True) is None


def test_snapshots_without_the_switches_are_the_full_model(data_zip, tmp_path):
    """Snapshots written before the switches existed have no style_mod / cond_mod: loaders and resume read the
    full model."""
    run = launch(_opts(tmp_path, data_zip), overrides=MICRO)
    data = checkpoint.load_snapshot(run.snapshot)
    data["G_kwargs"] = {k: v for k, v in data["G_kwargs"].items() if k not in ("style_mod", "cond_mod")}
    checkpoint.save_snapshot(run.snapshot, data)
    G = load_generator(run.snapshot, "cpu")
    assert G.synthesis.style_mod and G.synthesis.cond_mod
    assert launch(_opts(tmp_path, data_zip, resume="latest", kimg=0.004), overrides=MICRO, dry_run=True) is None


# ----------------------------------------------------------------------------------------------------------------
# Official pickles of the ablations.

PKL_RES = 32
PKL_KW = dict(fmap_base=128, fmap_max=16, latent_size=16, dlatent_size=16, mapping_fmaps=16)


@pytest.mark.parametrize("variant", ["no-style-mod", "no-cond-mod"])
def test_a_converted_variant_pickle_rebuilds_the_variant(variant, tmp_path):
    flags = {k: v for k, v in VARIANTS[variant].items() if not v}  # as run_training.py sets them: only when off
    nets = make_official_states(PKL_RES, seed=2, **PKL_KW, **flags)
    for net in (nets[0], nets[2]):  # ToRGB scaled to a trained network's output range (see test_official_reference)
        syn = net._state["components"]["synthesis"]._state
        syn["variables"] = [(n, v * np.float32(1 / 16) if "/ToRGB/" in n and not n.endswith("mod_weight") else v)
                            for n, v in syn["variables"]]
    path = tmp_path / f"co-mod-gan-{variant}.pkl"
    path.write_bytes(dumps_official(nets))
    snap = convert_tf_pickle(path)
    for key in ("style_mod", "cond_mod"):
        assert snap["G_kwargs"][key] is VARIANTS[variant][key]
    converted = tmp_path / "converted.pt"
    result = CliRunner().invoke(legacy.main, ["--source", str(path), "--dest", str(converted)])
    assert result.exit_code == 0, result.output
    assert checkpoint.load_snapshot(converted)["G_kwargs"] == snap["G_kwargs"]
    assert load_generator(converted, "cpu").init_kwargs == snap["G_kwargs"]
    G = load_generator(path, "cpu")  # the in-memory conversion every loader uses
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, [2, 3, PKL_RES, PKL_RES])
    mask = np.ones([2, 1, PKL_RES, PKL_RES])
    mask[:, :, 4:20, 8:28] = 0
    z = rng.normal(size=[2, 16])
    theirs = G_main(z, img, mask, variables_of(nets[2]), PKL_RES, fmap_base=128, fmap_max=16, **VARIANTS[variant])
    with torch.no_grad():
        ours = G(*(torch.from_numpy(a).float() for a in (img, mask)), z=torch.from_numpy(z).float(),
                 noise_mode="const")
    assert np.abs(ours.double().numpy() - theirs).max() <= 1e-4
    assert np.abs(theirs - img).max() > 0.1  # the holes hold a real signal


def test_variant_pickle_errors_are_named(tmp_path):
    path = tmp_path / "neither.pkl"
    path.write_bytes(dumps_official(make_official_states(PKL_RES, style_mod=False, cond_mod=False, **PKL_KW)))
    with pytest.raises(TFImportError, match=r"style_mod=False and cond_mod=False"):
        convert_tf_pickle(path)
    # Switches that do not fit the weights: full-width modulation weights under style_mod=False.
    G, D, Gs = make_official_states(PKL_RES, **PKL_KW)
    for net in (G, Gs):
        for state in (net._state, net._state["components"]["synthesis"]._state):
            state["static_kwargs"]["style_mod"] = False
    path = tmp_path / "mismatch.pkl"
    path.write_bytes(dumps_official((G, D, Gs)))
    with pytest.raises(TFImportError, match=r"shape mismatches.*mod_weight \[48, 16\] -> .*affine\.weight needs "
                                            r"\[16, 32\]"):
        convert_tf_pickle(path)
    # G and its synthesis disagreeing is named too.
    G, D, Gs = make_official_states(PKL_RES, **PKL_KW)
    G._state["components"]["synthesis"]._state["static_kwargs"]["cond_mod"] = False
    path = tmp_path / "disagree.pkl"
    path.write_bytes(dumps_official((G, D, Gs)))
    with pytest.raises(TFImportError, match="cond_mod differs between G and its synthesis"):
        convert_tf_pickle(path)
