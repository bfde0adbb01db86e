"""generate.py and inference/inpaint.py: any-size images, file and spec masks, exact known pixels, seeds, errors."""

import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import generate
from dnnlib import UserError
from inference.fit_resize import _any_resize, fit_to_model, paste_back, plan_fit
from inference.inpaint import inpaint_image, parse_seeds
from inference.pictures import CROP_COLOR
from training.checkpoint import save_snapshot
from training.networks import Discriminator, Generator

SMALL = dict(img_resolution=32, channel_base=128, channel_max=16, num_fp16_res=0)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(z_dim=16, w_dim=16, mapping_kwargs=dict(num_layers=2), **SMALL).eval()
    with torch.no_grad():  # A fresh G has zero noise strengths; a trained one does not.
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.5)
    D = Discriminator(**SMALL)
    path = str(tmp_path_factory.mktemp("snap") / "network-snapshot-000000.pt")
    save_snapshot(path, {"G_kwargs": G.init_kwargs, "D_kwargs": D.init_kwargs, "G": G.state_dict(),
                         "G_ema": G.state_dict(), "D": D.state_dict()})
    return path


def _image(h, w, seed):
    """A smooth colourful test image (gradients plus a blob), so a filled hole is unlike the original."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 127 // (h + w)], axis=-1)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


def _hole_png(h, w, box):
    """On-disk mask: white = hole inside box (top, left, bottom, right), black = known."""
    m = np.zeros((h, w), np.uint8)
    t, l, b, r = box
    m[t:b, l:r] = 255
    return m


def _save(arr, path):
    PIL.Image.fromarray(arr).save(path)
    return str(path)


def _read(path):
    return np.asarray(PIL.Image.open(path).convert("RGB"))


def _run(args):
    return CliRunner().invoke(generate.main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def odd_inputs(tmp_path):
    """Two images of odd sizes (37x53 is HxW; 300x200) with their `_mask` files in a separate folder."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    specs = {"tall": (53, 37, (10, 5, 30, 25)), "wide": (200, 300, (50, 120, 140, 260))}
    for i, (name, (h, w, box)) in enumerate(specs.items()):
        _save(_image(h, w, i), images / f"{name}.png")
        _save(_hole_png(h, w, box), masks / f"{name}_mask.png")
    return images, masks, specs


def _check_known_exact_and_hole_changed(out, img, known):
    assert out.shape == img.shape
    assert np.array_equal(out[known], img[known]), "a known pixel changed"
    changed = (out != img).any(axis=-1)[~known]
    assert changed.mean() > 0.5, f"only {changed.mean():.0%} of the hole pixels were filled with new content"


def test_file_masks_any_size_known_pixels_exact_and_seeds(snapshot, odd_inputs, tmp_path):
    images, masks, specs = odd_inputs
    out = tmp_path / "out"
    res = _run(["--network", snapshot, "--images", images, "--masks", masks, "--seeds", "0-2", "--outdir", out,
                "--grid", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    for name, (h, w, box) in specs.items():
        img = _read(images / f"{name}.png")
        known = _hole_png(h, w, box) == 0
        outs = [_read(out / f"{name}-seed{s:04d}.png") for s in range(3)]
        for o in outs:
            _check_known_exact_and_hole_changed(o, img, known)
        assert (outs[0] != outs[1]).any(axis=-1)[~known].mean() > 0.5, "seeds 0 and 1 gave the same completion"
        grid = _read(out / f"{name}-grid.png")
        assert grid.shape == (h, 4 * w + 3 * 2, 3)  # input with hole, then three seeds, 2 px gaps
        for k, o in enumerate(outs):  # then the seeds' columns are the results
            assert np.array_equal(grid[:, (k + 1) * (w + 2) : (k + 1) * (w + 2) + w], o)
        # The input column: the photo, and over it the crop windows of --fit auto (crop for these sizes).
        drawn = (grid[:, :w] != img).any(axis=-1) & known
        assert drawn.any() and (grid[:, :w][drawn] == CROP_COLOR).all()

    # The same seed alone, in another batch, reproduces the same file bit for bit.
    again = tmp_path / "again"
    res = _run(["--network", snapshot, "--images", images / "tall.png", "--masks", masks / "tall_mask.png",
                "--seeds", "1", "--batch", "1", "--outdir", again, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert np.array_equal(_read(again / "tall-seed0001.png"), _read(out / "tall-seed0001.png"))


def test_spec_masks_reproducible_and_centered(snapshot, odd_inputs, tmp_path):
    images, _masks, specs = odd_inputs
    for run in ("a", "b"):
        res = _run(["--network", snapshot, "--images", images, "--masks", "center", "--seeds", "3,5",
                    "--outdir", tmp_path / run, "--device", "cpu"])
        assert res.exit_code == 0, res.output
    for name, (h, w, _box) in specs.items():
        mask_png = _read(tmp_path / "a" / f"{name}-mask.png")[..., 0]
        hole = mask_png == 255
        rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
        assert abs((rows[0] + rows[-1]) - (h - 1)) <= 1 and abs((cols[0] + cols[-1]) - (w - 1)) <= 1
        img = _read(images / f"{name}.png")
        for seed in (3, 5):
            a = _read(tmp_path / "a" / f"{name}-seed{seed:04d}.png")
            _check_known_exact_and_hole_changed(a, img, ~hole)
            assert np.array_equal(a, _read(tmp_path / "b" / f"{name}-seed{seed:04d}.png"))

    res = _run(["--network", snapshot, "--images", images, "--masks", "free-form", "--seeds", "0",
                "--outdir", tmp_path / "ff", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    hole = _read(tmp_path / "ff" / "wide-mask.png")[..., 0] == 255
    _check_known_exact_and_hole_changed(_read(tmp_path / "ff" / "wide-seed0000.png"), _read(images / "wide.png"),
                                        ~hole)


def test_masks_beside_images_and_black_holes(snapshot, tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    img = _image(40, 40, 3)
    _save(img, folder / "face.png")
    _save(255 - _hole_png(40, 40, (8, 8, 24, 30)), folder / "face_mask.png")  # black = hole in this file
    res = _run(["--network", snapshot, "--images", folder, "--masks", folder, "--mask-hole", "black", "--seeds", "0",
                "--outdir", tmp_path / "out", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert sorted(os.listdir(tmp_path / "out")) == ["face-seed0000.png"]  # the mask file is not an image to fill
    _check_known_exact_and_hole_changed(_read(tmp_path / "out" / "face-seed0000.png"), img,
                                        _hole_png(40, 40, (8, 8, 24, 30)) == 0)


def test_per_file_errors_are_named_and_the_run_goes_on(snapshot, tmp_path):
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    for name in ("good", "mismatch", "nohole", "nomask"):
        _save(_image(30, 20, 0), images / f"{name}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    PIL.Image.fromarray(_image(30, 20, 1)).save(images / "good.jpg")  # same stem as good.png: would collide
    _save(_hole_png(30, 20, (5, 5, 15, 15)), masks / "good.png")
    _save(_hole_png(20, 30, (5, 5, 15, 15)), masks / "mismatch.png")
    _save(np.zeros((30, 20), np.uint8), masks / "nohole.png")
    _save(_hole_png(30, 20, (5, 5, 15, 15)), masks / "broken.png")
    result = CliRunner().invoke(generate.main, ["--network", snapshot, "--images", str(images), "--masks", str(masks),
                                                "--seeds", "0", "--outdir", str(out), "--device", "cpu"])
    assert result.exit_code == 1
    err = result.stderr
    assert "5 image(s) failed" in err
    assert f"{images / 'good.png'}: same name as {images / 'good.jpg'}" in err
    assert "mismatch.png" in err and "20x30" in err and "30x20" in err
    assert "nohole.png" in err and "no hole" in err
    assert "broken.png" in err and "cannot decode" in err
    assert "nomask.png" in err and "no mask" in err
    assert os.listdir(out) == ["good-seed0000.png"]


def test_fatal_errors_exit_2_without_traceback(snapshot, tmp_path):
    img = _save(_image(16, 16, 0), tmp_path / "a.png")
    common = ["--images", img, "--seeds", "0", "--outdir", tmp_path / "out", "--device", "cpu"]
    cases = [
        (["--network", snapshot, "--masks", "center", "--resolution", "64"], ["32x32", "--resolution 64"]),
        (["--network", tmp_path / "missing.pt", "--masks", "center"], ["missing.pt", "not found"]),
        (["--network", snapshot, "--masks", "no-such-mask-kind"], ["--masks no-such-mask-kind"]),
        (["--network", snapshot, "--masks", "center", "--images", tmp_path / "nothing"], ["nothing", "no such"]),
        (["--network", snapshot, "--masks", "center", "--outdir", img], ["--outdir", "a.png", "is a file"]),
        (["--network", snapshot, "--masks", "center", "--outdir", tmp_path / "a.png" / "sub"],
         ["--outdir", "a.png is a file"]),
    ]
    for args, needles in cases:
        result = CliRunner().invoke(generate.main, [str(a) for a in common + args])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        for needle in needles:
            assert needle in result.stderr, (needle, result.stderr)


def test_options_out_of_reach_of_the_networks_are_refused_by_name(snapshot, tmp_path):
    img = _save(_image(16, 16, 0), tmp_path / "a.png")
    common = ["--network", snapshot, "--images", img, "--masks", "center", "--outdir", tmp_path / "out"]
    for args, needle in ((["--trunc", "nan"], "'nan' is not a finite number"),
                         (["--trunc", "inf"], "'--trunc'"),
                         (["--seeds", "4294967296"], "4294967296 is too large (seeds go up to 4294967295)"),
                         (["--seeds", "0-4294967296"], "too large")):  # refused before the range is expanded
        result = CliRunner().invoke(generate.main, [str(a) for a in common + args])
        assert result.exit_code == 2 and needle in result.stderr, (args, result.output)
    assert not os.path.exists(tmp_path / "out")


def test_tiny_images_get_spec_masks_and_a_repeated_seed_runs_once(snapshot, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    _save(_image(1, 1, 0), images / "dot.png")  # under the mask generators' 4 px: a crop of a 4x4 draw
    _save(_image(3, 2, 0), images / "small.png")
    _save(_image(20, 20, 0), images / "face.png")
    result = _run(["--network", snapshot, "--images", images, "--masks", "center", "--seeds", "0-2,1",
                   "--outdir", tmp_path / "out", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "3 of 3 images inpainted; 9 files" in result.output
    assert _read(tmp_path / "out" / "small-seed0002.png").shape == (3, 2, 3)


def test_malformed_snapshots_are_named_errors(snapshot, tmp_path):
    good = torch.load(snapshot, weights_only=True)
    cases = {"kwstr": (dict(G_kwargs="oops"), "G_kwargs is str, expected a dict"),
             "noema": (dict(G_ema=None), "G_ema is NoneType"),
             "bogus": (dict(G_kwargs={**good["G_kwargs"], "bogus": 1}), "unexpected keyword argument 'bogus'"),
             "negres": (dict(G_kwargs={**good["G_kwargs"], "img_resolution": -3}), "img_resolution"),
             "wide": (dict(G_kwargs={**good["G_kwargs"], "channel_max": 8}), "size mismatch for")}
    img = _save(_image(16, 16, 0), tmp_path / "a.png")
    for name, (change, needle) in cases.items():
        path = str(tmp_path / f"{name}.pt")
        save_snapshot(path, {**{k: v for k, v in good.items() if k not in ("format", "version")}, **change})
        result = CliRunner().invoke(generate.main, ["--network", path, "--images", img, "--masks", "center",
                                                    "--outdir", str(tmp_path / "out")])
        assert result.exit_code == 2, (name, result.output)
        assert result.stderr.startswith(f"error: {path}: ") and needle in result.stderr, (name, result.stderr)


def test_random_noise_is_reproducible_per_seed_whatever_the_batch(snapshot):
    from inference.loading import load_generator

    G = load_generator(snapshot, "cpu")
    img = _image(32, 32, 1)
    mask = np.ones((32, 32), np.float32)
    mask[8:24, 8:24] = 0
    dev = torch.device("cpu")
    batched = inpaint_image(G, img, mask, [4, 7], device=dev, noise_mode="random", batch_size=8)
    alone = inpaint_image(G, img, mask, [7], device=dev, noise_mode="random")
    assert np.array_equal(batched[1], alone[0])
    const = inpaint_image(G, img, mask, [7], device=dev, noise_mode="const")
    assert not np.array_equal(const[0], alone[0])  # random noise really is in play


def test_dropout_is_reproducible_per_seed_and_changes_the_fill(snapshot, tmp_path):
    from inference.loading import load_generator

    G = load_generator(snapshot, "cpu")
    img = _image(32, 32, 2)
    mask = np.ones((32, 32), np.float32)
    mask[8:24, 8:24] = 0
    dev = torch.device("cpu")
    batched = inpaint_image(G, img, mask, [3, 5], device=dev, dropout=True, batch_size=8)
    alone = inpaint_image(G, img, mask, [5], device=dev, dropout=True)
    assert np.array_equal(batched[1], alone[0])
    plain = inpaint_image(G, img, mask, [5], device=dev)
    assert not np.array_equal(plain[0], alone[0])  # the dropout mask really is drawn
    _save(img, tmp_path / "img.png")
    outs = []
    for flag in ("--dropout", "--no-dropout"):
        args = ["--network", snapshot, "--images", tmp_path / "img.png", "--masks", "center", "--seeds", "5",
                "--outdir", tmp_path / flag, "--device", "cpu", flag]
        result = _run(args)
        assert result.exit_code == 0, result.output
        outs.append(_read(tmp_path / flag / "img-seed0005.png"))
    assert not np.array_equal(*outs)


def test_fit_policy_keeps_every_hole_and_pads_by_reflection():
    rng = np.random.default_rng(0)
    for h, w in [(53, 37), (200, 300), (10, 10), (1, 40)]:
        flags = rng.random((h, w)) < 0.02
        p = plan_fit(h, w, 32)
        assert max(p.inner_h, p.inner_w) == 32
        small = _any_resize(flags, p.inner_h, p.inner_w)
        # Brute force: an output pixel is a hole iff a hole pixel overlaps its footprint (open intervals).
        ys, xs = np.nonzero(flags)
        expect = np.zeros_like(small)
        for y, x in zip(ys, xs):
            rows = [i for i in range(p.inner_h) if (y + 1) * p.inner_h > i * h and y * p.inner_h < (i + 1) * h]
            cols = [j for j in range(p.inner_w) if (x + 1) * p.inner_w > j * w and x * p.inner_w < (j + 1) * w]
            expect[np.ix_(rows, cols)] = True
        assert np.array_equal(small, expect), (h, w)
    img = _image(20, 32, 0)
    mask = np.ones((20, 32), np.float32)
    mask[:, :4] = 0
    canvas, canvas_mask, p = fit_to_model(img, mask, 32)
    assert (p.pad_top, p.inner_h) == (6, 20) and canvas.shape == (3, 32, 32)
    assert np.array_equal(canvas_mask[0, :6], canvas_mask[0, 12:6:-1])  # reflected padding of the mask
    assert (canvas[:, canvas_mask[0] == 0] == 0).all()  # hole content never reaches the generator


def test_fit_at_the_model_resolution_is_the_identity():
    # The demo's faces are already 32x32: the fitting path must hand G the image and its mask unchanged and paste
    # G's output back without resampling, so that no seam or grid line at the hole's edge can come from here.
    from inference.fitting import choose_fit

    assert choose_fit("auto", 32, 32, 32) == "resize"
    img = _image(32, 32, 3)
    mask = np.ones((32, 32), np.float32)
    mask[8:24, 8:24] = 0
    canvas, canvas_mask, p = fit_to_model(img, mask, 32)
    assert (p.inner_h, p.inner_w, p.pad_top, p.pad_left) == (32, 32, 0, 0)
    assert np.array_equal(canvas_mask[0], mask)
    expect = img.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1
    assert np.array_equal(canvas, expect * mask[None])
    raw = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32)).astype(np.float32)
    out = paste_back(raw, img, mask, p)
    raw_u8 = np.clip(np.rint((raw.transpose(1, 2, 0) + 1) * 127.5), 0, 255).astype(np.uint8)
    assert np.array_equal(out[mask == 0], raw_u8[mask == 0]) and np.array_equal(out[mask == 1], img[mask == 1])


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5, 1,10-11") == [5, 1, 10, 11]
    assert parse_seeds("3,0-3,1") == [3, 0, 1, 2]  # a repeat runs once, where it first appears
    assert parse_seeds("4294967295") == [4294967295]
    for bad in ("", "a", "3-1", "1--2"):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)


def test_fit_face_cli_grid_messages_and_fallback(snapshot, tmp_path):
    import skimage.data

    from inference.pictures import FRAME_COLOR, LANDMARK_COLORS

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    astro = skimage.data.astronaut()
    _save(astro, images / "astro.png")
    _save(_hole_png(512, 512, (115, 222, 156, 263)), masks / "astro.png")  # over the right cheek
    _save(np.full((120, 90, 3), 200, np.uint8), images / "blank.png")
    _save(_hole_png(120, 90, (40, 30, 60, 50)), masks / "blank.png")
    _save(np.concatenate([astro, astro], axis=1), images / "two.png")
    _save(_hole_png(512, 1024, (115, 734, 156, 775)), masks / "two.png")
    base = ["--network", snapshot, "--images", images, "--masks", masks, "--seeds", "0", "--device", "cpu",
            "--fit", "face"]
    res = CliRunner().invoke(generate.main, [str(a) for a in base + ["--outdir", tmp_path / "a", "--grid"]])
    assert res.exit_code == 1
    assert f"{images / 'blank.png'}: no face found" in res.stderr
    assert f"{images / 'two.png'}: 2 faces found" in res.stderr and "--face-index" in res.stderr
    out = _read(tmp_path / "a" / "astro-seed0000.png")
    _check_known_exact_and_hole_changed(out, astro, _hole_png(512, 512, (115, 222, 156, 263)) == 0)
    grid = _read(tmp_path / "a" / "astro-grid.png")[:, :512]  # the input column shows the landmarks and frame
    for color in (FRAME_COLOR, LANDMARK_COLORS["right_eye"], LANDMARK_COLORS["mouth"]):
        assert (grid == color).all(axis=-1).sum() > 10, color

    res = CliRunner().invoke(generate.main, [str(a) for a in base + ["--outdir", tmp_path / "b", "--face-index", "1",
                                                                     "--fit-fallback", "crop"]])
    assert res.exit_code == 0, res.output
    assert "note: fell back to --fit crop" in res.stderr and "blank.png: no face found" in res.stderr
    two = np.concatenate([astro, astro], axis=1)
    _check_known_exact_and_hole_changed(_read(tmp_path / "b" / "two-seed0000.png"), two,
                                        _hole_png(512, 1024, (115, 734, 156, 775)) == 0)
