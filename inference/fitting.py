"""How an image meets the model: the one place that picks the fit strategy (`resize`, `crop` or `face`) for a
photo and runs it around a generator call, for generate.py, the Python API and the web app alike.

- `resize` (inference.fit_resize): the whole image on the model's canvas; right for aligned face crops.
- `crop` (inference.fit_crop): a window around each group of holes at the photo's native resolution, so that
  the completion is as sharp as the rest of a large photo.
- `face` (inference.face_landmarks, inference.face_align): the face found and framed as FFHQ frames its faces
  (eyes level, centred, at the training scale), warped in and the completion warped back.

`auto` (the default) is `resize` for an image that already is square at the model's resolution (it is then taken
to be an aligned crop, as the training images were) and `crop` otherwise: a phone photo keeps its detail, and
`crop` never fails, where `face` needs a face that the detector finds. Every strategy keeps every known pixel of
the photo bit-exact.
"""

import dataclasses

from dnnlib import UserError
from inference import face_align, fit_crop
from inference.fit_names import (  # noqa: F401 (the names, re-exported)
    DEFAULT_FIT,
    FIT_CHOICES,
    FIT_FALLBACKS,
    FIT_STRATEGIES,
)
from inference.fit_resize import Placement, fit_to_model, paste_back, plan_fit  # noqa: F401 (the resize policy)


class FitError(UserError):
    """The photo cannot be fitted with the strategy asked for (no face found, several faces, a hole outside the
    face's frame); the message names the image."""


@dataclasses.dataclass
class FitReport:
    """What was done to one image, for the grid's overlay and the app."""

    strategy: str  # the strategy that ran: resize, crop or face
    asked: str  # the strategy asked for (auto, or a fallback's origin)
    crops: list = dataclasses.field(default_factory=list)  # fit_crop.CropPlan of each window (crop)
    faces: list = dataclasses.field(default_factory=list)  # every face_landmarks.Face found (face)
    face_index: int = None  # which of them was framed
    quad: object = None  # [4, 2] the model frame's corners in the photo (face)
    placement: object = None  # fit_resize.Placement (resize)
    note: str = ""  # why a fallback ran, if one did

    @property
    def face(self):
        return None if self.face_index is None else self.faces[self.face_index]


def choose_fit(fit, height, width, resolution):
    """The strategy that `fit` names for an H x W image; `auto` resolves as the module docstring says."""
    if fit == "auto":
        return "resize" if height == width == resolution else "crop"
    if fit not in FIT_STRATEGIES:
        raise UserError(f"fit {fit!r}: not one of {', '.join(FIT_CHOICES)}")
    return fit


def check_fallback(fallback):
    """A UserError unless fallback is None or one of FIT_FALLBACKS."""
    if fallback not in (None,) + FIT_FALLBACKS:
        raise UserError(f"fit fallback {fallback!r}: not one of {', '.join(FIT_FALLBACKS)}")


def pick_face(img, name, face_index=None):
    """(faces, index) of the face to frame: the only one, or face_index of several (counted left to right)."""
    from inference.face_landmarks import detect_faces

    faces = detect_faces(img)
    if not faces:
        raise FitError(f"{name}: no face found for --fit face (use --fit crop, or --fit-fallback crop)")
    if face_index is None and len(faces) > 1:
        where = ", ".join(f"{i}: x {f.box[0]:.0f}-{f.box[2]:.0f}" for i, f in enumerate(faces))
        raise FitError(f"{name}: {len(faces)} faces found ({where}, left to right); pick one with --face-index")
    index = face_index or 0
    if not 0 <= index < len(faces):
        raise FitError(f"{name}: --face-index {index}, but {len(faces)} face(s) found")
    return faces, index


def _fill_resize(img, mask, resolution, fill, report):
    canvas, canvas_mask, placement = fit_to_model(img, mask, resolution)
    report.placement = placement
    return [paste_back(out, img, mask, placement) for out in fill(canvas, canvas_mask)]


def _fill_face(img, mask, resolution, fill, report, name, face_index):
    # The landmarks come from the photo as given, hole pixels included: a hole over an eye hides it from the
    # model, not from the detector, so the frame stays where the face is.
    report.faces, report.face_index = pick_face(img, name, face_index)
    face = report.face
    quad = face_align.ffhq_quad(face.right_eye, face.left_eye, face.mouth)
    canvas, canvas_mask, frame = face_align.fit_face(img, mask, quad, resolution)
    report.quad = frame.quad
    if frame.hole_outside:
        raise FitError(f"{name}: {frame.hole_outside} hole pixel(s) lie outside the face's frame, which --fit face "
                       "cannot fill (use --fit crop, or --fit-fallback crop)")
    return [face_align.paste_face(out, img, mask, frame) for out in fill(canvas, canvas_mask)]


def fit_and_fill(img, mask, resolution, fill, *, fit="auto", face_index=None, fallback="none", name="image"):
    """Fill the holes of one photo through the model with the strategy `fit` (one of FIT_CHOICES).

    img: uint8 [H, W, 3]; mask: float32 [H, W], 1 = known. fill(canvas, canvas_mask) runs the generator on one
    float32 [3, R, R] canvas in [-1, 1] and its [1, R, R] mask and returns a list of [3, R, R] outputs (one per
    seed); it may be called several times (once per crop). face_index picks one of several faces; fallback
    (FIT_FALLBACKS) is the strategy to run when `face` raises a FitError. Returns (one uint8 [H, W, 3] result per
    seed, FitReport). Known pixels of img are kept bit-exactly by every strategy.
    """
    assert img.ndim == 3 and img.shape[2] == 3 and mask.shape == img.shape[:2], (img.shape, mask.shape)
    strategy = choose_fit(fit, img.shape[0], img.shape[1], resolution)
    check_fallback(fallback)
    report = FitReport(strategy=strategy, asked=fit)
    if strategy == "face":
        try:
            return _fill_face(img, mask, resolution, fill, report, name, face_index), report
        except FitError as err:
            if fallback in (None, "none"):
                raise
            strategy, report = fallback, FitReport(strategy=fallback, asked=fit, faces=report.faces,
                                                   note=f"fell back to --fit {fallback}: {err}")
    if strategy == "crop":
        report.crops = fit_crop.plan_crops(mask, resolution)
        return fit_crop.fill_crops(img, mask, report.crops, fill), report
    return _fill_resize(img, mask, resolution, fill, report), report
