"""Mask-consistent augmentation (training/augment.py): geometry moves image and mask together, colour leaves the
mask alone, p = 0 is the identity, gradients to second order, the ADA heuristic, and the options that set it up."""

import json
import os

import pytest
import torch
from click.testing import CliRunner
from test_loss import LinearD, TinyG
from test_loss import _batch as loss_batch
from test_training import MICRO, make_zip, opts_for
from torch.autograd import gradcheck, gradgradcheck

import train
from dnnlib import UserError
from torch_utils.ops import upfirdn2d
from training import augment, checkpoint, config
from training.augment import COLOR_OPS, GEOMETRIC_OPS, AdaTuner, AugmentPipe, ada_adjust, make_augment_pipe
from training.loss import CoModGANLoss
from training.training_loop import launch

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _marked_batch(n=16, res=32):
    """Masks with an interior hole and a hole touching the left border; every image channel marks the holes
    (-1 in a hole, +1 elsewhere), so the image shows where the hole went."""
    mask = torch.ones(n, 1, res, res)
    mask[:, :, 10:22, 12:20] = 0
    mask[:, :, 2:7, 0:5] = 0
    return (mask * 2 - 1).repeat(1, 3, 1, 1), mask


@pytest.mark.parametrize("op", GEOMETRIC_OPS)
def test_geometric_op_moves_the_mask_with_the_image(op):
    img, mask = _marked_batch()
    torch.manual_seed(1)
    out, out_mask = AugmentPipe(p=1, **{op: 1})(img, mask)
    assert ((out_mask == 0) | (out_mask == 1)).all(), "the mask must stay binary"
    moved = (out_mask != mask).flatten(1).any(dim=1)
    assert moved.float().mean() >= 0.4, f"{op} at p = 1 moved the holes of only {int(moved.sum())} of 16 masks"
    marked = out[:, :1]  # the image's own record of where the hole went
    clear = marked.abs() > 0.5  # away from the resampled edge, whose values pass through 0
    wrong = (out_mask == 1) != (marked > 0)
    assert not (wrong & clear).any(), f"{op}: {int((wrong & clear).sum())} pixels where mask and image disagree"
    if op in ("xflip", "rotate90", "xint"):  # whole-pixel moves: the marked image has no edge pixels, all agree
        assert clear.all() and not wrong.any()
    else:
        assert (~clear).float().mean() < 0.05  # only a thin band along the edges is undecided


def test_geometry_is_the_same_for_image_and_mask_in_every_image():
    # All geometric ops composed into one map per image, at p = 1.
    img, mask = _marked_batch(n=8)
    torch.manual_seed(2)
    out, out_mask = AugmentPipe(p=1, **{op: 1 for op in GEOMETRIC_OPS})(img, mask)
    wrong = (out_mask == 1) != (out[:, :1] > 0)
    assert not (wrong & (out[:, :1].abs() > 0.5)).any()


@pytest.mark.parametrize("op", COLOR_OPS)
def test_colour_op_leaves_the_mask_bitwise_unchanged(op):
    torch.manual_seed(0)
    img = torch.rand(8, 3, 16, 16) * 2 - 1
    mask = (torch.rand(8, 1, 16, 16) > 0.3).float()
    out, out_mask = AugmentPipe(p=1, **{op: 1})(img, mask)
    assert torch.equal(out_mask, mask)
    assert not torch.allclose(out, img), f"{op} at p = 1 did not change the images"


def test_p_zero_is_the_identity():
    img, mask = _marked_batch(n=4)
    state = torch.get_rng_state()
    out, out_mask = make_augment_pipe(p=0)(img, mask)
    assert out is img and out_mask is mask
    assert torch.equal(torch.get_rng_state(), state), "p = 0 must not draw random numbers"


def test_cpu_filter_matrices_equal_upfirdn2d():
    f = upfirdn2d.setup_filter(list(augment.SYM6))
    x = torch.randn(2, 3, 20, 26, dtype=torch.float64)
    up = upfirdn2d.upsample2d(x, f, up=2, impl="ref")
    torch.testing.assert_close(augment._upsample2x(x), up, rtol=0, atol=1e-5)
    down = upfirdn2d.downsample2d(up, f, down=2, padding=-6, flip_filter=True, impl="ref")
    torch.testing.assert_close(augment._downsample2x(up, 6), down, rtol=0, atol=1e-5)


def test_gradients_to_second_order():
    # R1 differentiates D(augment(x)) w.r.t. x and then backpropagates that gradient: the pipeline needs exact
    # first and second derivatives (stylegan2-ada needed a grid_sample fix for this; torch 2.13 has it).
    pipe = make_augment_pipe(p=1)
    mask = torch.ones(2, 1, 6, 6, dtype=torch.float64)
    mask[:, :, 2:4, 1:4] = 0

    def f(x):
        torch.manual_seed(3)  # the same draws on every evaluation
        return pipe(x, mask)[0]

    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(f, (x,), fast_mode=True)
    assert gradgradcheck(f, (x,), fast_mode=True)


# ---------------------------------------------------------------------------------------------------------------
# In the loss: what D sees is augmented, what G sees is not, R1 differentiates the image before augmentation.


def test_r1_is_taken_before_augmentation():
    # D(x) = <w, x> + <v, m> on contrast-augmented images c * x: dD/dx = c * w, so the penalty is c^2 |w|^2 per
    # image (w.r.t. the augmented image it would be |w|^2).
    img, mask, _z = loss_batch()
    D = LinearD()
    pipe = AugmentPipe(p=1, contrast=1)
    loss = CoModGANLoss(TinyG(), D, r1_gamma=10.0, augment_pipe=pipe)
    torch.manual_seed(5)
    stats = loss.d_r1(img, mask)
    torch.manual_seed(5)
    c = pipe._color(img.shape[0], img.device)[:, 0, 0]  # the same draws: each image's contrast factor
    assert not torch.allclose(c, torch.ones_like(c))
    expected = (c.square() * D.w.detach().square().sum()).sum()
    torch.testing.assert_close(stats["r1_penalty"], expected)


class _Recording(torch.nn.Module):
    """Wraps a module and keeps the (img, mask) of every call."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, img, mask, *args, **kwargs):
        self.calls.append((img.detach().clone(), mask.clone()))
        return self.inner(img, mask, *args, **kwargs)


def test_every_input_of_d_is_augmented_and_none_of_g():
    img, mask, z = loss_batch()
    G, pipe = TinyG(), _Recording(AugmentPipe(p=1, xflip=1, rotate90=1, brightness=1))
    G_rec = _Recording(G)  # records G's inputs; the loss maps z with G.mapping itself
    G_rec.mapping = G.mapping
    loss = CoModGANLoss(G_rec, LinearD(), style_mixing_prob=0.0, truncation_psi=1.0, augment_pipe=pipe)
    loss.g_main(img, mask, z)
    loss.d_main(img, mask, z)
    loss.d_r1(img, mask)
    assert len(pipe.calls) == 4  # G phase's fake; D phase's fake and real; R1's real
    assert torch.equal(pipe.calls[2][0], img) and torch.equal(pipe.calls[3][0], img)
    assert all(torch.equal(m, mask) for _img, m in pipe.calls)  # and the batch's own masks
    assert len(G_rec.calls) == 2 and all(torch.equal(i, img) and torch.equal(m, mask) for i, m in G_rec.calls)


# ---------------------------------------------------------------------------------------------------------------
# The ADA heuristic.


def test_ada_step_size_and_clamp():
    assert ada_adjust(0.5, 0.9, 0.6, nimg=128, ada_kimg=500) == pytest.approx(0.5 + 128 / 500_000)
    assert ada_adjust(0.5, 0.1, 0.6, nimg=128, ada_kimg=500) == pytest.approx(0.5 - 128 / 500_000)
    assert ada_adjust(0.999, 1.0, 0.6, nimg=128, ada_kimg=0.1) == 1.0
    assert ada_adjust(0.001, -1.0, 0.6, nimg=128, ada_kimg=0.1) == 0.0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_p_follows_the_real_signs_and_stays_in_range(sign):
    pipe = make_augment_pipe(p=0.5)
    tuner = AdaTuner(pipe, target=0.6, ada_kimg=1, batch=32, interval=4)  # 0.128 per update
    history = []
    for step in range(1, 41):
        tuner.accumulate(sign * 32 * 0.9, 32)  # mean sign 0.9 (above 0.6) or -0.9 (below)
        tuner.after_step(step)
        history.append(pipe.p)
    assert history[:3] == [0.5] * 3  # p moves every 4 steps only
    assert history[3] == pytest.approx(0.5 + sign * 0.128)
    diffs = [b - a for a, b in zip(history, history[1:])]
    assert all(d * sign >= 0 for d in diffs), "p must move with the signs"
    assert history[-1] == (1.0 if sign > 0 else 0.0) and all(0 <= p <= 1 for p in history)


def test_tuner_state_round_trips():
    tuner = AdaTuner(make_augment_pipe(p=0.25), ada_kimg=1, batch=8, interval=4)
    tuner.accumulate(5.0, 8)
    other = AdaTuner(make_augment_pipe(), ada_kimg=1, batch=8, interval=4)
    other.load_state_dict(tuner.state_dict())
    assert other.state_dict() == {"p": 0.25, "sign_sum": 5.0, "sign_count": 8}


# ---------------------------------------------------------------------------------------------------------------
# Options.


def _opts(**kw):
    return dict(cfg="tiny", data="x.zip", mask="center", outdir="runs", **kw)


def test_options_resolve_with_stylegan2_ada_defaults():
    c = config.build_config(_opts())
    assert c.aug == "noaug" and c.ada_kimg is None
    c = config.build_config(_opts(aug="ada"))
    assert (c.aug_p, c.ada_target, c.ada_kimg, c.ada_interval) == (0.0, 0.6, 500.0, 4)
    assert config.run_description(c).endswith("-ada")
    assert config.build_config(_opts(aug="ada", init="release.pkl")).ada_kimg == 100.0  # from weights
    assert config.build_config(_opts(aug="fixed", aug_p=0.3)).aug_p == 0.3


@pytest.mark.parametrize("kw, message", [
    (dict(aug_p=0.2), "--aug-p 0.2: there is no augmentation"),
    (dict(aug="fixed"), "--aug fixed needs --aug-p"),
    (dict(aug="fixed", aug_p=0.2, ada_kimg=100), "--ada-kimg: tunes the adaptive p of --aug ada only"),
    (dict(ada_target=0.7), "--ada-target: tunes the adaptive p"),
    (dict(aug="ada", aug_p=1.5), "--aug-p 1.5: must be in"),
])
def test_option_errors_name_the_option(kw, message):
    with pytest.raises(UserError, match=message.replace("+", r"\+")):
        config.build_config(_opts(**kw))


# ---------------------------------------------------------------------------------------------------------------
# In training.


@pytest.fixture(scope="module")
def data_zip(tmp_path_factory):
    return make_zip(tmp_path_factory.mktemp("data") / "tiny.zip")


def _weights(snapshot):
    return checkpoint.load_snapshot(snapshot)


def test_ada_at_p_zero_trains_exactly_like_noaug(tmp_path, data_zip):
    # Target 1: the mean sign can never exceed it, so p stays 0 and the pipeline must cost nothing, not even
    # random draws (which would change G's noise).
    plain = launch(opts_for(tmp_path, data_zip, "plain", kimg=0.008), overrides=MICRO)
    ada = launch(opts_for(tmp_path, data_zip, "ada", kimg=0.008, aug="ada", ada_target=1.0), overrides=MICRO)
    a, b = _weights(plain.snapshot), _weights(ada.snapshot)
    assert b["augment"]["p"] == 0.0 and a["augment"] is None
    for key in ("G", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(b[key][name], tensor), f"{key}.{name}"


def test_kill_and_resume_with_ada_matches_an_uninterrupted_run(tmp_path, data_zip):
    # Batch 4, 8 steps: p moves after steps 4 and 8 by 4 * 4 / 100 = 0.16; snapshots after steps 3, 6 and 8, so the
    # resume starts between two updates with ADA's sums half collected. Target 0: D's early signs move p either way.
    kw = dict(aug="ada", aug_p=0.5, ada_target=0.0, ada_kimg=0.1, tick_kimg=0.012)
    full = launch(opts_for(tmp_path, data_zip, "full", kimg=0.032, **kw), overrides=MICRO)
    launch(opts_for(tmp_path, data_zip, "split", kimg=0.024, **kw), overrides=MICRO)
    resumed = launch(opts_for(tmp_path, data_zip, "split", kimg=0.032, resume="latest", **kw), overrides=MICRO)
    a, b = _weights(full.snapshot), _weights(resumed.snapshot)
    assert a["progress"]["step"] == b["progress"]["step"] == 8
    assert a["augment"]["p"] != 0.5 and a["augment"] == b["augment"]
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(b[key][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")


def test_train_cli_with_ada_end_to_end(tmp_path, data_zip):
    args = ["--outdir", str(tmp_path / "runs"), "--data", data_zip, "--cfg", "tiny", "--device", "cpu",
            "--batch", "4", "--batch-gpu", "4", "--kimg", "0.008", "--tick-kimg", "0.004", "--workers", "0",
            "--mask", "center", "--grid", "2x1", "--aug", "ada", "--aug-p", "0.2", "--ada-kimg", "0.05"]
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 0, result.output
    run_dir = os.path.join(tmp_path, "runs", os.listdir(tmp_path / "runs")[0])
    assert run_dir.endswith("-ada")
    log = open(os.path.join(run_dir, "log.txt")).read()
    assert "augmentation ada (bgc)" in log and "augment_p 0.2000" in log
    records = [json.loads(line) for line in open(os.path.join(run_dir, "stats.jsonl"))]
    assert [r["augment_p"] for r in records] == [0.2, 0.2]  # one update is due after 4 steps; only 2 ran
    assert all(-1 <= r["signs_real"] <= 1 for r in records)
    options = json.load(open(os.path.join(run_dir, "training_options.json")))
    assert (options["aug"], options["aug_p"], options["ada_kimg"], options["ada_target"]) == ("ada", 0.2, 0.05, 0.6)
