"""inference/fitting.py and its strategies: known pixels exact for resize, crop and face at odd sizes; crop at
native resolution; the face frame recovered on real faces under known scales and rotations; face messages.

The generator is a fake `fill` (fit_and_fill takes any callable), so the planner runs at resolution 512 without a
512 network; tests/test_generate.py runs the strategies through a tiny real Generator and the CLI.
"""

import cv2
import numpy as np
import pytest
import skimage.data

from inference import face_align
from inference.fit_crop import plan_crops
from inference.fit_resize import plan_fit
from inference.fitting import FIT_CHOICES, FIT_STRATEGIES, FitError, choose_fit, fit_and_fill, pick_face

ASTRONAUT = skimage.data.astronaut()  # 512 x 512 RGB, one face


class FakeFill:
    """Stands in for the generator: records each canvas and returns `seeds` outputs of seeded noise."""

    def __init__(self, seeds=2):
        self.seeds, self.calls = seeds, []

    def __call__(self, canvas, canvas_mask):
        assert canvas.shape[0] == 3 and canvas_mask.shape == (1,) + canvas.shape[1:]
        self.calls.append((canvas, canvas_mask))
        rng = np.random.default_rng(len(self.calls))
        return [rng.uniform(-1, 1, canvas.shape).astype(np.float32) for _ in range(self.seeds)]


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx * yy) % 256], axis=-1)
    return np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


def _mask(h, w, *boxes):
    mask = np.ones((h, w), np.float32)
    for t, l, b, r in boxes:
        mask[t:b, l:r] = 0
    return mask


def _check_only_holes_changed(results, img, mask):
    known = mask == 1
    for res in results:
        assert res.shape == img.shape and res.dtype == np.uint8
        assert np.array_equal(res[known], img[known]), "a known pixel changed"
        assert (res != img).any(axis=-1)[~known].mean() > 0.9, "the hole was not filled"


def test_names_and_default():
    assert FIT_STRATEGIES == ("resize", "crop", "face") and FIT_CHOICES == ("auto",) + FIT_STRATEGIES
    assert choose_fit("auto", 512, 512, 512) == "resize"  # an aligned crop at the model's resolution
    assert choose_fit("auto", 3000, 4000, 512) == "crop"  # a phone photo
    assert choose_fit("auto", 256, 256, 512) == "crop"
    assert choose_fit("face", 512, 512, 512) == "face"
    with pytest.raises(Exception, match="stretch"):
        choose_fit("stretch", 10, 10, 32)


@pytest.mark.parametrize("fit", ["resize", "crop"])
def test_known_pixels_exact_at_odd_sizes(fit):
    for h, w, boxes in [(53, 37, [(10, 5, 30, 25)]), (211, 333, [(3, 4, 40, 50), (150, 280, 200, 330)]),
                        (1, 40, [(0, 10, 1, 20)]), (97, 13, [(90, 0, 97, 13)])]:
        img, mask = _image(h, w, h), _mask(h, w, *boxes)
        results, report = fit_and_fill(img, mask, 32, FakeFill(), fit=fit)
        assert report.strategy == fit
        _check_only_holes_changed(results, img, mask)


def test_face_known_pixels_exact_at_odd_size():
    img = np.ascontiguousarray(ASTRONAUT[7:408, 13:500])  # 401 x 487
    mask = _mask(*img.shape[:2], (115, 222, 156, 263))  # over the right cheek
    results, report = fit_and_fill(img, mask, 64, FakeFill(), fit="face", name="astro.png")
    assert report.strategy == "face" and report.quad.shape == (4, 2)
    _check_only_holes_changed(results, img, mask)


def test_crop_keeps_full_resolution():
    h, w, r = 1500, 2000, 512
    img = _image(h, w, 0)
    mask = _mask(h, w, (700, 900, 780, 1000))  # a 100 x 80 (W x H) hole
    assert plan_fit(h, w, r).scale == pytest.approx(512 / 2000)  # what resize would do
    (plan,) = plan_crops(mask, r)
    assert plan.scale == 1 and (plan.height, plan.width) == (r, r)
    assert plan.top <= 700 and plan.top + r >= 780 and plan.left <= 900 and plan.left + r >= 1000
    fill = FakeFill()
    results, report = fit_and_fill(img, mask, r, fill, fit="crop")
    (canvas, canvas_mask), = fill.calls
    # The model sees the photo's own pixels (scale 1, no resampling), the hole exactly as drawn.
    rows, cols = plan.slices
    assert np.array_equal(canvas_mask[0], mask[rows, cols])
    known = canvas_mask[0] == 1
    native = (img[rows, cols].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
    assert np.array_equal(canvas[:, known], native[:, known])
    _check_only_holes_changed(results, img, mask)
    # auto chooses crop for this photo.
    assert fit_and_fill(img, mask, r, FakeFill(1))[1].strategy == "crop"


def test_crop_windows_far_apart_and_near():
    mask = _mask(1500, 2000, (100, 100, 150, 160), (1300, 1800, 1350, 1900))
    plans = plan_crops(mask, 512)
    assert len(plans) == 2 and all(p.scale == 1 for p in plans)
    fill = FakeFill()
    img = _image(1500, 2000, 1)
    _check_only_holes_changed(fit_and_fill(img, mask, 512, fill, fit="crop")[0], img, mask)
    assert len(fill.calls) == 2
    near = _mask(1500, 2000, (100, 100, 150, 160), (300, 400, 350, 450))  # windows overlap: one crop
    (plan,) = plan_crops(near, 512)
    assert plan.hole_box == (100, 100, 350, 450)
    # Larger holes: downscaled only as much as their context needs, at most to the whole photo.
    (plan,) = plan_crops(_mask(1500, 2000, (500, 600, 800, 1000)), 512)  # 400 x 300: a window of 800
    assert (plan.height, plan.width) == (800, 800) and plan.scale == pytest.approx(512 / 800)
    (plan,) = plan_crops(_mask(1500, 2000, (200, 300, 1000, 1300)), 512)
    assert (plan.height, plan.width) == (1500, 2000) and plan.scale == pytest.approx(512 / 2000)


def _transformed(img, scale, degrees, centre, out_hw):
    """img rotated (counter-clockwise on screen) by degrees and scaled about `centre`, which lands in the middle
    of an out_hw canvas of flat grey, and the 2x3 map of continuous image coordinates."""
    h, w = out_hw
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), degrees, scale)
    m[:, 2] += np.array([w / 2, h / 2]) - centre
    flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.warpAffine(img, m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=(120, 120, 120))
    return out, lambda p: (np.asarray(p) - 0.5) @ m[:, :2].T + m[:, 2] + 0.5  # cv2 maps pixel centres at integers


def _quad(img):
    faces, index = pick_face(img, "test")
    f = faces[index]
    return face_align.ffhq_quad(f.right_eye, f.left_eye, f.mouth)


def _lfw_face(i):
    """One of scikit-image's 25 x 25 LFW faces, upscaled to 200 px on a 400 x 480 grey RGB canvas (BlazeFace
    does not find faces of 25 pixels)."""
    face = cv2.resize((skimage.data.lfw_subset()[i] * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((400, 480), 120, np.uint8)
    canvas[100:300, 140:340] = face
    return np.repeat(canvas[..., None], 3, axis=2)


@pytest.mark.parametrize("name, corner_tol, angle_tol", [("astronaut", 0.04, 3.0), ("lfw0", 0.075, 5.0),
                                                         ("lfw50", 0.075, 5.0)])
def test_face_quad_follows_known_scale_and_rotation(name, corner_tol, angle_tol):
    """The quad found on the photo moved by a known similarity equals the first quad moved the same way.

    Tolerances: a fraction of the quad's side for the corners, degrees for the angle; the LFW faces are 25-pixel
    originals upscaled 8x, so their landmarks are blurrier than the astronaut's."""
    img = ASTRONAUT if name == "astronaut" else _lfw_face(int(name[3:]))
    q0 = _quad(img)
    side0, angle0 = face_align.quad_size_angle(q0)
    for scale, degrees in [(0.6, 20), (1.0, -15), (2.2, 30)]:
        out_hw = (int(img.shape[0] * scale * 1.3) + 11, int(img.shape[1] * scale * 1.3) + 7)  # odd sizes
        moved, to_new = _transformed(img, scale, degrees, q0.mean(axis=0), out_hw)
        quad = _quad(moved)
        side, angle = face_align.quad_size_angle(quad)
        expect = to_new(q0)
        err = np.abs(quad - expect).max()
        assert err <= corner_tol * side0 * scale, (name, scale, degrees, err)
        assert abs(side / (side0 * scale) - 1) < 0.05, (name, scale, degrees, side)
        assert abs((angle - angle0) + degrees) < angle_tol, (name, scale, degrees, angle - angle0)


def test_face_messages_name_the_image():
    blank = np.full((300, 400, 3), 200, np.uint8)
    mask = _mask(300, 400, (100, 100, 150, 150))
    with pytest.raises(FitError, match=r"blank\.png: no face found"):
        fit_and_fill(blank, mask, 32, FakeFill(), fit="face", name="blank.png")
    # Told to, the face fit falls back (and says why).
    results, report = fit_and_fill(blank, mask, 32, FakeFill(), fit="face", fallback="crop", name="blank.png")
    assert report.strategy == "crop" and "no face found" in report.note
    _check_only_holes_changed(results, blank, mask)

    two = np.concatenate([ASTRONAUT, ASTRONAUT], axis=1)
    mask = _mask(512, 1024, (115, 745, 156, 786))  # the right-hand copy's cheek
    with pytest.raises(FitError, match=r"two\.png: 2 faces found.*--face-index"):
        fit_and_fill(two, mask, 32, FakeFill(), fit="face", name="two.png")
    results, report = fit_and_fill(two, mask, 32, FakeFill(), fit="face", face_index=1, name="two.png")
    assert report.face_index == 1 and report.quad[:, 0].min() > 512  # the right-hand face, left to right
    _check_only_holes_changed(results, two, mask)
    with pytest.raises(FitError, match="--face-index 2"):
        fit_and_fill(two, mask, 32, FakeFill(), fit="face", face_index=2, name="two.png")
    # The hole of the left face lies outside the right face's frame.
    mask = _mask(512, 1024, (115, 233, 156, 274))
    with pytest.raises(FitError, match="outside the face's frame"):
        fit_and_fill(two, mask, 32, FakeFill(), fit="face", face_index=1, name="two.png")


def test_readme_figure_script(tmp_path):
    from docs.make_fit_figure import main

    main(str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").stat().st_size > 10000


def test_small_face_in_a_large_photo_is_found_on_tiles():
    from inference.face_landmarks import _detect, detect_faces

    photo = np.full((1500, 2000, 3), 90, np.uint8)
    photo[700:1212, 1100:1612] = ASTRONAUT  # the face is ~1/20 of the photo's width: too small for one pass
    assert not _detect(photo, "short") and not _detect(photo, "full")
    (face,) = detect_faces(photo)
    (ref,) = detect_faces(ASTRONAUT)
    assert np.abs(np.subtract(face.right_eye, (1100, 700)) - ref.right_eye).max() < 3
    assert np.abs(np.subtract(face.mouth, (1100, 700)) - ref.mouth).max() < 3


@pytest.mark.parametrize("fit", FIT_STRATEGIES)
def test_what_was_under_the_hole_never_shows(fit):
    """Whatever the photo holds under the hole, the canvas and the result (the face fit's feathered edge included)
    are the same bit for bit. The face is framed once, on the clean photo: the detector does see the hole's
    pixels, by design (fitting._fill_face)."""
    mask = _mask(512, 512, (115, 222, 156, 263))
    quad = _quad(ASTRONAUT)
    runs = []
    for colour in [(255, 0, 255), (0, 255, 0)]:
        img = ASTRONAUT.copy()
        img[mask == 0] = colour
        if fit == "face":
            canvas, canvas_mask, frame = face_align.fit_face(img, mask, quad, 64)
            runs.append((canvas, face_align.paste_face(canvas, img, mask, frame)))
        else:
            fill = FakeFill(1)  # the same noise in both runs
            (result,), _ = fit_and_fill(img, mask, 64, fill, fit=fit)
            runs.append((fill.calls[0][0], result))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
