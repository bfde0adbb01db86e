"""Criminisi's exemplar-based inpainting (metrics/criminisi.py): known pixels exact, periodic textures continued,
the fill order the paper's priority gives, determinism, named errors, and the baseline API the metrics and the app
use."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_metrics import make_zip

import calc_metrics
from dnnlib import UserError
from metrics import criminisi
from metrics.baselines import BASELINE_METHODS, inpaint_image, list_baselines, make_baseline


def _tiled(h, w, period=(5, 7), seed=0):
    """A periodic texture: one random colour tile of `period` pixels, repeated (the period fits no patch grid)."""
    tile = np.random.default_rng(seed).integers(0, 256, (*period, 3), dtype=np.uint8)
    reps = (h // period[0] + 1, w // period[1] + 1, 1)
    return np.tile(tile, reps)[:h, :w]


def _with_junk(image, known, seed=1):
    """The image with random values under the hole: a result must not read them."""
    junk = np.random.default_rng(seed).integers(0, 256, image.shape, dtype=np.uint8)
    return np.where(known[..., None], image, junk)


def _hole_error(out, truth, known):
    return np.abs(out.astype(float) - truth)[~known].mean()


def _face(size=64):
    import cv2
    from skimage.data import lfw_subset

    face = (lfw_subset()[0] * 255).round().astype(np.uint8)  # 25x25 grey face
    return cv2.resize(np.repeat(face[..., None], 3, axis=2), (size, size), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("texture", ["tiles", "stripes"])
def test_a_hole_in_a_periodic_texture_is_filled_with_that_texture(texture):
    if texture == "tiles":
        truth = _tiled(64, 64)
    else:
        colours = np.array([[200, 40, 40], [30, 60, 220]], np.uint8)
        truth = colours[(np.arange(64) // 6) % 2][None].repeat(64, axis=0)  # vertical stripes, 6 pixels wide
    known = np.ones([64, 64], bool)
    known[20:44, 18:42] = False
    out = criminisi.inpaint(_with_junk(truth, known), known)
    assert out.dtype == np.uint8 and out.shape == truth.shape
    np.testing.assert_array_equal(out[known], truth[known])
    flat = np.broadcast_to(truth[known].mean(axis=0), truth.shape)  # the best single colour
    assert _hole_error(flat, truth, known) > 40
    assert _hole_error(out, truth, known) < 0.05 * _hole_error(flat, truth, known)


def test_known_pixels_exact_on_a_face_with_a_free_form_hole():
    from data.masks import eval_mask

    image = _face()
    known = eval_mask("free-form-large", 64, 0, 2) == 1
    assert 0.1 < (~known).mean() < 0.7
    out = criminisi.inpaint(_with_junk(image, known), known)
    np.testing.assert_array_equal(out[known], image[known])
    # Every filled pixel is a copy of a known pixel of the input (the method synthesises no new colours).
    palette = {tuple(p) for p in image[known]}
    assert all(tuple(p) in palette for p in out[~known])


def test_deterministic_and_blind_to_the_values_under_the_hole():
    image = _face()
    known = np.ones([64, 64], bool)
    known[16:48, 20:44] = False
    first = criminisi.inpaint(_with_junk(image, known, seed=1), known)
    np.testing.assert_array_equal(first, criminisi.inpaint(_with_junk(image, known, seed=1), known))
    np.testing.assert_array_equal(first, criminisi.inpaint(_with_junk(image, known, seed=2), known))
    assert inpaint_image("criminisi", image, known.astype(np.float32), seed=0).tolist() == \
        inpaint_image("criminisi", image, known.astype(np.float32), seed=9).tolist()  # no seed to follow


def test_the_first_patch_follows_the_priority():
    # A vertical edge (columns < 30 dark, >= 30 light) runs into a square hole (rows 16-35, columns 16-39): the
    # front pixels whose patch holds the edge where it meets the hole's top or bottom side (the isophote is
    # perpendicular to the front there) have the largest data term, far above the corners' confidence.
    image = np.full([48, 48, 3], 220, np.uint8)
    image[:, :30] = 40
    known = np.ones([48, 48], bool)
    known[16:36, 16:40] = False
    fill = criminisi._Fill(image, known, 9, False, criminisi.SEARCH_RADIUS)
    y, x = np.unravel_index(np.argmax(fill.prio), fill.prio.shape)
    assert y - fill.m in (16, 35) and 25 <= x - fill.m <= 34, (y - fill.m, x - fill.m)
    # On a flat image the data term is zero everywhere: confidence decides, and the hole's corners come first
    # (their patches hold the most known pixels); ties go to the first in raster order.
    fill = criminisi._Fill(np.full_like(image, 128), known, 9, False, criminisi.SEARCH_RADIUS)
    y, x = np.unravel_index(np.argmax(fill.prio), fill.prio.shape)
    assert (y - fill.m, x - fill.m) == (16, 16)
    # And the edge continues straight through the hole.
    out = criminisi.inpaint(image, known)
    np.testing.assert_array_equal(out, image)


def test_a_wide_hole_in_a_small_image_shrinks_the_patch():
    known = np.ones([32, 32], bool)
    known[8:24, 8:24] = False  # an 8 px border: no fully known 9x9 patch, but 7x7 ones
    assert criminisi.choose_patch(known) == (7, False)
    image = _tiled(32, 32, period=(2, 5))  # the 7x7 candidates (centres 3-4 px from a side) hold every phase
    out = criminisi.inpaint(_with_junk(image, known), known)
    np.testing.assert_array_equal(out[known], image[known])
    assert _hole_error(out, image, known) < 5


def test_without_a_fully_known_3x3_patch_partly_known_candidates_serve():
    image = _tiled(30, 30, period=(4, 5))
    yy, xx = np.mgrid[0:30, 0:30]
    known = (yy + 2 * xx) % 3 != 0  # a third of the pixels missing, on diagonals: no 3x3 patch is fully known
    known[10:20, 10:20] = False  # and a solid hole
    assert criminisi.choose_patch(known) == (3, True)
    out = criminisi.inpaint(_with_junk(image, known), known)
    np.testing.assert_array_equal(out[known], image[known])
    flat = np.broadcast_to(image[known].mean(axis=0), image.shape)
    assert _hole_error(out, image, known) < 0.1 * _hole_error(flat, image, known)
    # Almost nothing known (a single pixel): still a fill, of copies of it.
    lone = np.zeros([16, 16], bool)
    lone[5, 7] = True
    out = criminisi.inpaint(_with_junk(_tiled(16, 16), lone), lone)
    assert (out == _tiled(16, 16)[5, 7]).all()


def test_bad_inputs_are_named_errors():
    image = _tiled(32, 32)
    known = np.ones([32, 32], bool)
    known[10:20, 10:20] = False
    cases = [
        ((image.astype(np.float32), known), ValueError, "image must be uint8 RGB"),
        ((image[..., 0], known), ValueError, "image must be uint8 RGB"),
        ((image, known[:, :31]), ValueError, r"mask must be \[H, W\] = \[32, 32\]"),
        ((image, known.astype(np.uint8)), ValueError, "mask must be bool or float"),
        ((image, np.where(known, 1.0, 0.5)), ValueError, "1 = known"),
        ((image, np.ones([32, 32], bool)), UserError, "no hole"),
        ((image, np.zeros([32, 32], bool)), UserError, "whole image is a hole"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            criminisi.inpaint(*args)
    with pytest.raises(ValueError, match="patch_size must be an odd integer"):
        criminisi.inpaint(image, known, patch_size=8)
    with pytest.raises(ValueError, match="search_radius must be a positive integer or None"):
        criminisi.inpaint(image, known, search_radius=0)
    # Through the baseline API: the same checks, the other baselines' wording for the mask.
    with pytest.raises(UserError, match="criminisi: the whole image is a hole"):
        inpaint_image("criminisi", image, np.zeros([32, 32], np.float32))
    with pytest.raises(ValueError, match="1 = known"):
        inpaint_image("criminisi", image, known.astype(np.uint8))
    np.testing.assert_array_equal(inpaint_image("criminisi", image, np.ones([32, 32], np.float32)), image)


def test_the_generator_convention_composites_and_runs_on_its_device():
    assert "criminisi" in list_baselines() and BASELINE_METHODS["criminisi"].label == "Criminisi"
    baseline = make_baseline("criminisi")
    assert not baseline.takes_seeds
    truth = torch.from_numpy(np.stack([_tiled(32, 32, seed=s) for s in (0, 1)])).permute(0, 3, 1, 2) / 127.5 - 1
    mask = torch.ones([2, 1, 32, 32])
    mask[0, :, 8:20, 10:22] = 0
    mask[1, :, 14:30, 2:12] = 0
    out = baseline(truth * mask, mask, None)
    assert out.shape == truth.shape and out.dtype == torch.float32
    assert torch.equal(out * mask, truth * mask)
    assert (out - truth).abs().max() < 1e-5  # each image's own texture, pixel for pixel


def test_calc_metrics_runs_the_criminisi_baseline(tmp_path):
    data = make_zip(tmp_path / "val32.zip", 4, 32, seed=3)
    out = tmp_path / "res.json"
    args = ["--baseline", "criminisi", "--data", data, "--mask", "center", "--metrics", "pix4", "--out", out,
            "--device", "cpu", "--batch", 2, "--cache-dir", tmp_path / "cache"]
    res = CliRunner().invoke(calc_metrics.main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    record = json.loads(out.read_text())
    assert record["baseline"] == "criminisi"
    results = record["results"][0]["results"]
    assert results["pix4_center/num"] == 4 and np.isfinite(results["pix4_psnr"])
    assert calc_metrics.split_baselines(["telea,criminisi"]) == ["telea", "criminisi"]
