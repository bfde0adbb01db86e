"""Import of official CoModGAN TensorFlow pickles: structure, exact mapping, TF-semantics numerics, safety, CLI."""

import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from close_helpers import assert_rel_close
from tf_pickle_maker import (
    FakeNetwork,
    dumps_official,
    make_official_states,
    official_variables,
    trainable_count,
    variables_of,
    write_official_pickle,
)

from converters.tf_pickle import TFImportError, convert_tf_pickle, load_tf_pickle
from inference.loading import load_generator
from legacy import main as legacy_main
from training.checkpoint import load_snapshot
from training.networks import Discriminator, Generator

RES = 32
SMALL = dict(fmap_base=128, fmap_max=16, latent_size=32, dlatent_size=32, mapping_fmaps=32)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A small official-structure pickle, its source networks, and its conversion."""
    folder = tmp_path_factory.mktemp("official")
    path = folder / "co-mod-gan-tiny-000000.pkl"
    marker = folder / "build_module_src_ran"
    nets = write_official_pickle(path, RES, protocol=3, marker_path=marker, **SMALL)
    return dict(path=path, marker=marker, nets=nets, snapshot=convert_tf_pickle(path))


# ----------------------------------------------------------------------------------------------------------------
# NumPy implementation of the official TF semantics (NCHW activations, TF-layout weights, equalized lr).

def np_lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)  # fused_bias_act: alpha 0.2, default gain sqrt(2)


def np_dense(x, w, b, lrmul=1.0, act="linear"):
    """dense_layer + apply_bias_act: w [in, out] scaled by lrmul/sqrt(in) at run time, bias by lrmul."""
    y = x @ (w * (lrmul / np.sqrt(w.shape[0]))) + b * lrmul
    return np_lrelu(y) if act == "lrelu" else y


def np_correlate(x, w, stride=1):
    """tf.nn.conv2d(VALID) on NCHW x with weight [k, k, in, out] (cross-correlation), per-sample w if 5-D."""
    k = w.shape[-4] if w.ndim == 5 else w.shape[0]
    h = (x.shape[2] - k) // stride + 1
    wd = (x.shape[3] - k) // stride + 1
    out = 0
    for a in range(k):
        for b in range(k):
            patch = x[:, :, a:a + stride * (h - 1) + 1:stride, b:b + stride * (wd - 1) + 1:stride]
            tap = w[:, a, b] if w.ndim == 5 else w[a, b]
            out = out + np.einsum("nchw,nco->nohw" if w.ndim == 5 else "nchw,co->nohw", patch, tap)
    return out


def np_fir(x, pad0, pad1, gain=1.0):
    """_simple_upfirdn_2d with up = down = 1: pad, then convolve with the normalized [1,3,3,1] filter."""
    k = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float64)
    k = k / k.sum() * gain
    xp = np.pad(x, ((0, 0), (0, 0), (pad0, pad1), (pad0, pad1)))
    n, c = x.shape[:2]
    flat = xp.reshape(n * c, 1, *xp.shape[2:])
    return np_correlate(flat, k[::-1, ::-1, None, None]).reshape(n, c, *np.array(xp.shape[2:]) - 3)


def np_upsample_conv(x, ww):
    """upsample_conv_2d(factor 2, [1,3,3,1]) per sample: conv2d_transpose with the flipped, transposed kernel
    (filter[a, b, o, i] = w[k-1-a, k-1-b, i, o]), stride 2, VALID; then the FIR with gain 4, pads (1, 1)."""
    n, c, h, w = x.shape
    k, o = ww.shape[1], ww.shape[4]
    filt = np.transpose(ww[:, ::-1, ::-1], (0, 1, 2, 4, 3))  # [N, k, k, O, I]
    out = np.zeros([n, o, (h - 1) * 2 + k, (w - 1) * 2 + k])
    for a in range(k):
        for b in range(k):
            out[:, :, a:a + 2 * h - 1:2, b:b + 2 * w - 1:2] += np.einsum("nihw,noi->nohw", x, filt[:, a, b])
    p = (4 - 2) - (k - 1)
    return np_fir(out, (p + 1) // 2 + 1, p // 2 + 1, gain=4.0)


def np_modulated_layer(x, mod, tf, scope, up=False, demodulate=True, noise=None):
    """modulated_conv2d_layer + noise + apply_bias_act, exactly as the official layer() / torgb()."""
    w = tf[f"{scope}/weight"].astype(np.float64)
    k, fin = w.shape[0], w.shape[2]
    w = w / np.sqrt(k * k * fin)  # get_weight: he_std * lrmul with gain 1, lrmul 1
    s = np_dense(mod, tf[f"{scope}/mod_weight"], tf[f"{scope}/mod_bias"]) + 1  # [N, I]
    ww = w[None] * s[:, None, None, :, None]  # [N, k, k, I, O]
    if demodulate:
        ww = ww / np.sqrt((ww ** 2).sum(axis=(1, 2, 3)) + 1e-8)[:, None, None, None, :]
    if up:
        y = np_upsample_conv(x, ww)
    else:
        y = np_correlate(np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2))), ww)
    if noise is not None:
        y = y + noise * float(tf[f"{scope}/noise_strength"])
    y = y + tf[f"{scope}/bias"][None, :, None, None]
    return np_lrelu(y) if demodulate else y


def np_conv_down(x, w, b):
    """conv2d_layer(down=True) + apply_bias_act(lrelu): FIR pads (2, 2), then stride-2 VALID conv."""
    fin = w.shape[2]
    y = np_correlate(np_fir(x, 2, 2), w / np.sqrt(9 * fin), stride=2)
    return np_lrelu(y + b[None, :, None, None])


# ----------------------------------------------------------------------------------------------------------------
# Structure.

def test_helper_reproduces_published_parameter_counts():
    names = official_variables(512)
    mapping = trainable_count(names["G/mapping"])
    encoder = sum(int(np.prod(s)) for n, s in names["G/synthesis"] if n.startswith("E_"))
    total = mapping + trainable_count(names["G/synthesis"]) + trainable_count(names["G"])
    assert (total, mapping, encoder) == (79_792_231, 2_101_248, 31_952_000)
    assert trainable_count(names["D"]) == 28_982_913


def test_every_parameter_assigned_exactly_once(official):
    snap = official["snapshot"]
    G_tf, D_tf, Gs_tf = (variables_of(n) for n in official["nets"])
    for key, module, tf_vars in (("G", Generator(**snap["G_kwargs"]), G_tf),
                                 ("G_ema", Generator(**snap["G_kwargs"]), Gs_tf),
                                 ("D", Discriminator(**snap["D_kwargs"]), D_tf)):
        ref = module.state_dict()
        state = snap[key]
        assert set(state) == set(ref), key
        for name, tensor in state.items():
            assert tensor.shape == ref[name].shape, name
            assert tensor.dtype == torch.float32 and tensor.is_contiguous()
        module.load_state_dict(state, strict=True)
        # Random values are distinct, so equal multisets mean each TF value landed in exactly one place.
        ours = np.sort(np.concatenate([t.numpy().ravel() for t in state.values()]))
        theirs = np.sort(np.concatenate([np.ravel(v) for n, v in tf_vars.items() if n != "lod"]))
        np.testing.assert_array_equal(ours, theirs.astype(np.float32))
    assert not torch.equal(snap["G"]["mapping.fc0.weight"], snap["G_ema"]["mapping.fc0.weight"])
    assert not official["marker"].exists(), "build_module_src must never run"


def test_resolution_and_channels_come_from_static_kwargs(official):
    kw = official["snapshot"]["G_kwargs"]
    assert (kw["img_resolution"], kw["channel_base"], kw["channel_max"], kw["z_dim"], kw["w_dim"]) == (
        RES, 128, 16, 32, 32)
    assert kw["mapping_kwargs"]["layer_features"] == 32
    assert official["snapshot"]["D_kwargs"]["img_resolution"] == RES
    assert (kw["num_fp16_res"], kw["conv_clamp"]) == (0, None)  # float32 and unclamped, like the original
    fp16 = convert_tf_pickle(official["path"], fp16=True)
    assert (fp16["G_kwargs"]["num_fp16_res"], fp16["D_kwargs"]["conv_clamp"]) == (4, 256)


# ----------------------------------------------------------------------------------------------------------------
# Numerics against the official TF semantics.

def _tf64(net):
    return {n: np.asarray(v, dtype=np.float64) for n, v in variables_of(net).items()}


@pytest.fixture(scope="module")
def converted_G(official):
    G = Generator(**official["snapshot"]["G_kwargs"]).eval()
    G.load_state_dict(official["snapshot"]["G_ema"])
    return G


def test_dense_layers_match_tf(official, converted_G):
    tf = _tf64(official["nets"][2])
    rng = np.random.default_rng(1)
    z = rng.normal(size=[3, 32])
    ours = converted_G.mapping.fc0(torch.from_numpy(z).float())
    assert_rel_close(ours, np_dense(z, tf["mapping/Dense0/weight"], tf["mapping/Dense0/bias"], lrmul=0.01, act="lrelu"))
    code = rng.normal(size=[3, 32])
    ours = converted_G.synthesis.b4.fc(torch.from_numpy(code).float())
    assert_rel_close(ours, np_dense(code, tf["synthesis/G_4x4/Dense/weight"], tf["synthesis/G_4x4/Dense/bias"],
                                    act="lrelu"))


@pytest.mark.parametrize("layer, scope, up", [("conv0", "G_8x8/Conv0_up", True), ("conv1", "G_8x8/Conv1", False)])
def test_modulated_conv_matches_tf(official, converted_G, layer, scope, up):
    tf = _tf64(official["nets"][2])
    rng = np.random.default_rng(2)
    block = converted_G.synthesis.b8
    module = getattr(block, layer)
    x = rng.normal(size=[2, module.in_channels, 4 if up else 8, 4 if up else 8])
    mod = rng.normal(size=[2, 32 + 32])  # concat([w_i, global code]): dlatent 32 + 2 * nf(1) = 32
    noise_index = 1 if up else 2  # noise{layer_idx}: G_8x8 Conv0_up is layer 1, Conv1 layer 2
    theirs = np_modulated_layer(x, mod, tf, f"synthesis/{scope}", up=up, noise=tf[f"synthesis/noise{noise_index}"])
    with torch.no_grad():
        ours = module(torch.from_numpy(x).float(), torch.from_numpy(mod).float(), noise_mode="const")
    assert_rel_close(ours, theirs)


def test_torgb_and_discriminator_conv_match_tf(official, converted_G):
    rng = np.random.default_rng(3)
    tf = _tf64(official["nets"][2])
    x = rng.normal(size=[2, 16, 8, 8])
    mod = rng.normal(size=[2, 64])
    with torch.no_grad():
        ours = converted_G.synthesis.b8.torgb(torch.from_numpy(x).float(), torch.from_numpy(mod).float())
    assert_rel_close(ours, np_modulated_layer(x, mod, tf, "synthesis/G_8x8/ToRGB", demodulate=False))

    tf_d = _tf64(official["nets"][1])
    D = Discriminator(**official["snapshot"]["D_kwargs"]).eval()
    D.load_state_dict(official["snapshot"]["D"])
    x = rng.normal(size=[2, 8, 32, 32])
    with torch.no_grad():
        ours = D.b32.conv1(torch.from_numpy(x).float())
    assert_rel_close(ours, np_conv_down(x, tf_d["32x32/Conv1_down/weight"], tf_d["32x32/Conv1_down/bias"]))


# ----------------------------------------------------------------------------------------------------------------
# Safety: nothing from the file runs.

class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("where", ["top", "nested"])
def test_foreign_globals_are_refused_and_nothing_runs(tmp_path, where):
    import builtins
    import os
    marker_sys, marker_open = tmp_path / "system_ran", tmp_path / "open_ran"
    evil = [_Evil(os.system, f"touch {marker_sys}"), _Evil(builtins.open, str(marker_open), "w")]
    if where == "top":
        payload = dumps_official(tuple(evil) + (evil[0],), protocol=3)
    else:
        G, D, Gs = make_official_states(RES, **SMALL)
        D._state["static_kwargs"]["resolution"] = evil[0]
        D._state["variables"].append(("Evil/weight", evil[1]))
        payload = dumps_official((G, D, Gs), protocol=3)
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(TFImportError, match=r"refusing to load.*(os|posix)\.system|refusing.*builtins\.open"):
        load_tf_pickle(path)
    assert not marker_sys.exists() and not marker_open.exists()


def test_other_pickled_classes_are_refused(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps((FakeNetwork({}), {"a": 1}, pytest.raises)))  # wrong module for the class
    with pytest.raises(TFImportError, match=r"tf_pickle_maker\.FakeNetwork"):
        load_tf_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_pickle_protocol_loads(tmp_path, protocol):
    path = tmp_path / "p.pkl"
    write_official_pickle(path, RES, protocol=protocol, **SMALL)
    G, D, Gs = load_tf_pickle(path)
    assert G.name == "G" and Gs.name == "Gs" and set(G.components) == {"synthesis", "mapping"}


def test_numpy1_global_names_load(tmp_path, official):
    # The release files were written with numpy 1.x, whose pickles name numpy.core.multiarray (protocol 3 text).
    payload = official["path"].read_bytes()
    assert b"numpy._core.multiarray\n" in payload
    path = tmp_path / "numpy1.pkl"
    path.write_bytes(payload.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    snap = convert_tf_pickle(path)
    assert all(torch.equal(snap["G_ema"][k], v) for k, v in official["snapshot"]["G_ema"].items())


# ----------------------------------------------------------------------------------------------------------------
# Mismatches are reported by name.

def test_missing_and_unknown_variables_are_named(tmp_path):
    path = tmp_path / "bad.pkl"
    extra = [("D", "Extra/weight", np.zeros([2, 2], np.float32))]
    write_official_pickle(path, RES, drop={("G/synthesis", "noise0"), ("G/mapping", "Dense3/bias")},
                          extra=extra, **SMALL)
    with pytest.raises(TFImportError) as info:
        convert_tf_pickle(path)
    msg = str(info.value)
    assert "synthesis/noise0" in msg and "mapping/Dense3/bias" in msg and "[G]" in msg
    path2 = tmp_path / "bad2.pkl"
    write_official_pickle(path2, RES, extra=extra, **SMALL)
    with pytest.raises(TFImportError, match=r"\[D\].*unknown official variables \(1\): Extra/weight"):
        convert_tf_pickle(path2)


def test_shape_mismatch_and_unsupported_kwargs_are_named(tmp_path):
    G, D, Gs = make_official_states(RES, **SMALL)
    G._state["components"]["synthesis"]._state["static_kwargs"]["fmap_max"] = 8
    G._state["static_kwargs"]["fmap_max"] = 8
    path = tmp_path / "shape.pkl"
    path.write_bytes(dumps_official((G, D, Gs)))
    with pytest.raises(TFImportError, match=r"\[G\].*shape mismatches.*G_4x4/Dense/weight"):
        convert_tf_pickle(path)
    path = tmp_path / "pix2pix.pkl"
    write_official_pickle(path, RES, pix2pix=True, **SMALL)
    with pytest.raises(TFImportError, match="pix2pix=True is not supported"):
        convert_tf_pickle(path)


def test_unreadable_files_give_clear_errors(tmp_path, official):
    with pytest.raises(TFImportError, match="file not found"):
        load_tf_pickle(tmp_path / "nope.pkl")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(official["path"].read_bytes()[:5000])
    with pytest.raises(TFImportError, match="not a readable TensorFlow network pickle"):
        load_tf_pickle(truncated)
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps({"G": 1}))
    with pytest.raises(TFImportError, match=r"expected a pickled tuple \(G, D, Gs\)"):
        load_tf_pickle(wrong)
    G, D, Gs = make_official_states(RES, **SMALL)
    D._state["variables"].append(("Odd/weight",))
    malformed = tmp_path / "malformed.pkl"
    malformed.write_bytes(dumps_official((G, D, Gs)))
    with pytest.raises(TFImportError, match=r"\[D\]: Network variables must be \(name, value\) pairs"):
        load_tf_pickle(malformed)


# ----------------------------------------------------------------------------------------------------------------
# CLI and loaders.

def test_cli_writes_a_loadable_snapshot(tmp_path, official):
    dest = tmp_path / "out" / "tiny.pt"
    result = CliRunner().invoke(legacy_main, ["--source", str(official["path"]), "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    snap = load_snapshot(dest)
    assert set(snap) >= {"G_kwargs", "D_kwargs", "G", "G_ema", "D"}
    for key in ("G", "G_ema", "D"):
        for name, tensor in official["snapshot"][key].items():
            assert torch.equal(snap[key][name], tensor), name
    G = load_generator(dest)
    assert G.img_resolution == RES and not any(p.requires_grad for p in G.parameters())
    result = CliRunner().invoke(legacy_main, ["--source", str(official["path"]), "--dest", str(dest)])
    assert result.exit_code == 2 and "file exists" in result.output
    # Our own snapshot needs no conversion; a --dest under a file is named before converting.
    result = CliRunner().invoke(legacy_main, ["--source", str(dest), "--dest", str(tmp_path / "again.pt")])
    assert result.exit_code == 2 and f"--source {dest}: already a comodgan-pytorch snapshot" in result.output
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(legacy_main, ["--source", str(official["path"]), "--dest",
                                              str(tmp_path / "afile" / "x.pt")])
    assert result.exit_code == 2 and f"{tmp_path / 'afile'} is a file" in result.output


def test_cli_reports_bad_source_without_traceback(tmp_path):
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    result = CliRunner().invoke(legacy_main, ["--source", str(bad), "--dest", str(tmp_path / "x.pt")])
    assert result.exit_code == 2
    assert "error:" in result.output and "os.system" in result.output and "Traceback" not in result.output
    assert f"error: {bad}: " in result.output  # the whole path, not only its name
    assert not (tmp_path / "x.pt").exists()


def test_load_generator_accepts_official_pickle(official):
    G = load_generator(official["path"])
    ref = official["snapshot"]["G_ema"]
    assert all(torch.equal(G.state_dict()[name], ref[name]) for name in ref)
    img = torch.rand(2, 3, RES, RES) * 2 - 1
    mask = torch.ones(2, 1, RES, RES)
    mask[:, :, 8:24, 8:24] = 0
    out = G(img, mask, z=torch.randn(2, 32), noise_mode="const")
    assert torch.equal(out * mask, img * mask) and torch.isfinite(out).all()
