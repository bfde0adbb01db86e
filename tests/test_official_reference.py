"""The whole converted network against an independent NumPy float64 implementation of the official forward
(tests/official_reference.py, written from zsyzzsoft/co-mod-gan training/co_mod_gan.py G_main / G_mapping /
G_synthesis_co_mod_gan / D_co_mod_gan): an official-structure pickle (tests/tf_pickle_maker.py) is converted with
legacy.py, and G's output and D's score must agree to 1e-4 (max abs) at 64x64 on random inputs and masks, with
the noise inputs of the pickle, with and without inference truncation, and with the global-code dropout on
(a shared keep mask); and our training forward (both phases) against G_main with is_training=True (w-average
update, style mixing, truncation 0.5)."""

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from official_reference import D_co_mod_gan, G_main, G_main_training
from tf_pickle_maker import dumps_official, make_official_states, variables_of

from inference.loading import load_generator
from legacy import main as legacy_main
from training.checkpoint import load_snapshot
from training.loss import CoModGANLoss
from training.networks import Discriminator, Generator

RES = 64
# Widths that change across resolutions (nf: 32 at 4..16, 16 at 32, 8 at 64) and an 8-layer mapping.
WIDTHS = dict(fmap_base=256, fmap_max=32)
KW = dict(WIDTHS, latent_size=32, dlatent_size=32, mapping_fmaps=32)
TOL = 1e-4
# The maker's N(0, 1) values give an untrained G whose images reach |40|; a trained one stays near [-1, 1]. The
# float32 network's error scales with its output, so the ToRGB layers are scaled to a trained output range.
TORGB_SCALE = 1 / 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An official-structure pickle, its TF variables per network, and its conversion by legacy.py."""
    folder = tmp_path_factory.mktemp("official")
    pkl, pt = folder / "co-mod-gan-test-64.pkl", folder / "converted.pt"
    nets = make_official_states(RES, seed=5, **KW)
    for net in (nets[0], nets[2]):
        synthesis = net._state["components"]["synthesis"]._state
        synthesis["variables"] = [(name, value * np.float32(TORGB_SCALE) if re.search(r"/ToRGB/(weight|bias)$", name)
                                   else value)
                                  for name, value in synthesis["variables"]]
    pkl.write_bytes(dumps_official(nets))
    result = CliRunner().invoke(legacy_main, ["--source", str(pkl), "--dest", str(pt)])
    assert result.exit_code == 0, result.output
    snap = load_snapshot(pt)
    return dict(tf={key: variables_of(net) for key, net in zip(("G", "D", "Gs"), nets)}, snap=snap, pt=pt)


def _generator(official, key):
    snap = official["snap"]
    G = Generator(**snap["G_kwargs"]).eval().requires_grad_(False)
    G.load_state_dict(snap[{"G": "G", "Gs": "G_ema"}[key]])
    return G


def _inputs(n, seed):
    """Random images in [-1, 1] and masks (1 = known): a rectangle hole, a rectangle plus scattered holes, all
    hole, all known, then random mixes."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(-1, 1, [n, 3, RES, RES])
    mask = np.ones([n, 1, RES, RES])
    for i in range(n):
        kind = i % 4
        if kind in (0, 1):
            y0, x0 = rng.integers(0, RES // 2, 2)
            h, w = rng.integers(8, RES // 2, 2)
            mask[i, :, y0:y0 + h, x0:x0 + w] = 0
        if kind == 1:
            mask[i] *= rng.uniform(size=[1, RES, RES]) > 0.3
        if kind == 2:
            mask[i] = 0
    return img, mask, rng.normal(size=[n, 32])


def _torch(*arrays):
    return [torch.from_numpy(np.ascontiguousarray(a)).float() for a in arrays]


def _max_diff(ours, theirs):
    return float(np.abs(ours.detach().double().numpy() - theirs).max())


@pytest.mark.parametrize("key", ["Gs", "G"])
def test_generator_matches_official_G_main(official, key):
    img, mask, z = _inputs(4, seed=1)
    theirs = G_main(z, img, mask, official["tf"][key], RES, **WIDTHS)
    with torch.no_grad():
        ours = _generator(official, key)(*_torch(img, mask), z=_torch(z)[0], noise_mode="const", dropout=False)
    assert _max_diff(ours, theirs) <= TOL
    assert 0.5 < theirs[2].std() < 5  # the all-hole sample: a real signal in a trained network's range
    # Known pixels are the input; the all-known sample is the input itself.
    np.testing.assert_array_equal(theirs[3], img[3])


def test_fast_inference_path_of_the_converted_file_matches_official(official):
    # What a user runs: load_generator on the converted file (the fast CPU path under no_grad).
    G = load_generator(official["pt"], "cpu")
    assert G.impl == "fast"
    img, mask, z = _inputs(4, seed=2)
    theirs = G_main(z, img, mask, official["tf"]["Gs"], RES, **WIDTHS)
    with torch.no_grad():
        ours = G(*_torch(img, mask), z=_torch(z)[0], noise_mode="const")
    assert _max_diff(ours, theirs) <= TOL


@pytest.mark.parametrize("psi", [0.5, 0.7])
def test_inference_truncation_lerps_toward_the_tracked_average(official, psi):
    img, mask, z = _inputs(4, seed=3)
    tf = official["tf"]["Gs"]
    assert np.abs(tf["dlatent_avg"]).max() > 0.1  # the pickle's tracked average, converted into w_avg
    theirs = G_main(z, img, mask, tf, RES, truncation_psi=psi, **WIDTHS)
    with torch.no_grad():
        ours = _generator(official, "Gs")(*_torch(img, mask), z=_torch(z)[0], truncation_psi=psi,
                                          noise_mode="const")
    assert _max_diff(ours, theirs) <= TOL
    untruncated = G_main(z, img, mask, tf, RES, **WIDTHS)
    assert np.abs(theirs - untruncated).max() > 100 * TOL  # the check above can fail


def _run_with_dropout(G, img, mask, z, seed):
    """Forward with the global-code dropout on; returns (output, keep mask, code before dropout, code after)."""
    seen = {}
    hooks = [G.encoder.b4.fc.register_forward_hook(lambda _m, _i, out: seen.__setitem__("fc", out.clone())),
             G.encoder.b4.register_forward_hook(lambda _m, _i, out: seen.__setitem__("code", out[0].clone()))]
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            out = G(*_torch(img, mask), z=_torch(z)[0], noise_mode="const", dropout=True)
    finally:
        for h in hooks:
            h.remove()
    keep = (seen["code"] != 0).double().numpy()
    return out, keep, seen["fc"].double().numpy(), seen["code"].double().numpy()


def test_dropout_on_matches_official_with_a_shared_keep_mask(official):
    # tf.nn.dropout(x, 0.5) in E_4x4 (TF 1.x: keep_prob 0.5): each unit kept with probability 0.5, scaled by 2.
    G = _generator(official, "Gs")
    img, mask, z = _inputs(4, seed=4)
    ours, keep, before, after = _run_with_dropout(G, img, mask, z, seed=11)
    np.testing.assert_allclose(after, before * keep * 2, rtol=1e-6, atol=0)
    assert 0 < keep.mean() < 1
    theirs = G_main(z, img, mask, official["tf"]["Gs"], RES, dropout_keep=keep, **WIDTHS)
    assert _max_diff(ours, theirs) <= TOL
    no_dropout = G_main(z, img, mask, official["tf"]["Gs"], RES, **WIDTHS)
    assert np.abs(theirs - no_dropout).max() > 100 * TOL

    # The fast path draws the same mask from the same seed (one dropout call on the same shape).
    fast = load_generator(official["pt"], "cpu")
    torch.manual_seed(11)
    with torch.no_grad():
        ours_fast = fast(*_torch(img, mask), z=_torch(z)[0], noise_mode="const", dropout=True)
    assert _max_diff(ours_fast, theirs) <= TOL


def test_dropout_keeps_half_the_units_statistically(official):
    G = _generator(official, "Gs")
    img, mask, _z = _inputs(64, seed=6)
    torch.manual_seed(0)
    with torch.no_grad():
        code, _feats = G.encoder(*_torch(img, mask), dropout=True)
        plain, _feats = G.encoder(*_torch(img, mask), dropout=False)
    kept = code != 0
    assert abs(kept.double().mean().item() - 0.5) < 0.04  # 4096 units: 5 standard deviations
    torch.testing.assert_close(code[kept], 2 * plain[kept], rtol=1e-6, atol=0)
    # Independent per unit: neither whole samples nor whole channels are dropped together.
    assert 0.3 < kept.double().mean(1).min() and kept.double().mean(1).max() < 0.7
    assert 0.2 < kept.double().mean(0).min() and kept.double().mean(0).max() < 0.8


@pytest.mark.parametrize("phase", ["g_main", "d_main"])
def test_training_forward_matches_official_G_main_is_training(official, phase):
    # Our training forward (CoModGANLoss.run_G, as the G and D phases call it) against G_main with
    # is_training=True: w-average update, style mixing, truncation 0.5 toward the updated average, dropout on.
    # The noise strengths are zeroed on both sides (training draws random noise).
    tf = {name: (np.zeros_like(value) if name.endswith("noise_strength") else value)
          for name, value in official["tf"]["G"].items()}
    G = _generator(official, "G").train().requires_grad_(phase == "g_main")
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.zero_()
    D = Discriminator(**official["snap"]["D_kwargs"]).train().requires_grad_(phase == "d_main")
    D.load_state_dict(official["snap"]["D"])
    img, mask, z = _inputs(4, seed=12)
    seen = {}
    G.encoder.b4.register_forward_hook(lambda _m, _i, out: seen.__setitem__("code", out[0].detach().clone()))
    G.synthesis.register_forward_hook(lambda _m, _i, out: seen.__setitem__("raw", out.detach().clone()))
    loss = CoModGANLoss(G, D, style_mixing_prob=1.0, truncation_psi=0.5)
    torch.manual_seed(21)
    getattr(loss, phase)(*_torch(img, mask, z), gain=1.0)
    # Replay the mixing draws of run_G (decision, cutoff, second z) from the same seed.
    torch.manual_seed(21)
    torch.rand([])
    cutoff = int(torch.randint(1, G.num_ws, []))
    z2 = torch.randn([4, 32]).double().numpy()
    keep = (seen["code"] != 0).double().numpy()
    theirs, avg = G_main_training(_torch(z)[0].double().numpy(), z2, cutoff, img, mask, tf, RES,
                                  dropout_keep=keep, **WIDTHS)
    assert np.abs(G.mapping.w_avg.double().numpy() - avg).max() <= 1e-6
    raw = seen["raw"].double().numpy()
    ours = raw * (1 - mask) + img * mask
    assert np.abs(ours - theirs).max() <= TOL
    untruncated, _avg = G_main_training(_torch(z)[0].double().numpy(), z2, cutoff, img, mask, tf, RES,
                                        truncation_psi=1.0, dropout_keep=keep, **WIDTHS)
    assert np.abs(theirs - untruncated).max() > 100 * TOL


@pytest.mark.parametrize("n", [4, 8])
def test_discriminator_matches_official_D_co_mod_gan(official, n):
    # n = 8: two minibatch-stddev groups (sample i in group i % 2, as TF's reshape to [4, 2, ...]).
    img, mask, _z = _inputs(n, seed=7 + n)
    theirs = D_co_mod_gan(img, mask, official["tf"]["D"], RES)
    D = Discriminator(**official["snap"]["D_kwargs"]).eval().requires_grad_(False)
    D.load_state_dict(official["snap"]["D"])
    with torch.no_grad():
        ours = D(*_torch(img, mask))
    assert ours.shape == (n, 1)
    assert _max_diff(ours, theirs) <= TOL
    assert np.ptp(theirs) > 100 * TOL  # scores differ per sample: the comparison is not of a constant
