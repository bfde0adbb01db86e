"""The `face` fit strategy's geometry: FFHQ's oriented square from the eye and mouth positions, the photo and its
mask warped into the model's frame along it, and the completion warped back into the hole.

The square is the one FFHQ's `recreate_aligned_images` cuts (NVlabs ffhq-dataset, the transform FFHQ and the
CelebA-HQ-like face models were trained on): centred a little below the eyes, turned so that the eyes are
level, its side the larger of 4x the eye distance and 3.6x the eye-to-mouth distance.

Coordinates are continuous image coordinates: x right, y down, pixel (i, j) covers [j, j+1] x [i, i+1].
"""

import dataclasses
import math

import cv2
import numpy as np
import scipy.ndimage

from inference.fit_resize import _any_resize, _fill_holes_with_mean

MAX_FEATHER = 8  # image pixels; the feather follows the blur of the back-warp, at most this wide


def ffhq_quad(eye_left, eye_right, mouth):
    """[4, 2] corners (top-left, bottom-left, bottom-right, top-right of the aligned face) from the eye on the
    image's left (the person's right eye), the eye on the image's right and the mouth centre, as FFHQ does."""
    eye_left, eye_right, mouth = (np.asarray(p, dtype=np.float64) for p in (eye_left, eye_right, mouth))
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = mouth - eye_avg
    # x: the square's half-width vector, along the eyes, tilted by the eye-to-mouth direction.
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]  # x turned by 90 degrees, pointing down the face
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_size_angle(quad):
    """(side in image pixels, rotation in degrees: the angle of the square's top edge, counter-clockwise on
    screen is negative because y points down)."""
    top = quad[3] - quad[0]
    return float(np.hypot(*top)), float(math.degrees(math.atan2(top[1], top[0])))


@dataclasses.dataclass(frozen=True)
class FaceFrame:
    """Where the model's R x R frame lies in the photo."""

    quad: np.ndarray  # [4, 2] corners in image coordinates (see ffhq_quad)
    resolution: int
    height: int  # the photo's size
    width: int
    hole_outside: int  # hole pixels of the photo that fall outside the frame (the face fit cannot fill them)

    @property
    def scale(self):
        """Model pixels per image pixel."""
        return self.resolution / quad_size_angle(self.quad)[0]

    def model_to_image(self):
        """2x3 affine: continuous model coordinates -> continuous image coordinates."""
        q0, q1, q3 = self.quad[0], self.quad[1], self.quad[3]
        r = self.resolution
        return np.column_stack([(q3 - q0) / r, (q1 - q0) / r, q0])


def _invert(m):
    a = np.linalg.inv(m[:, :2])
    return np.column_stack([a, -a @ m[:, 2]])


def _to_cv(m, src_scale=(1.0, 1.0)):
    """A continuous-coordinates affine (dst -> src) as cv2's pixel-index affine (cv2 puts pixel centres at
    integers), with the source also scaled by src_scale (x, y)."""
    s = np.diag(src_scale)
    lin = s @ m[:, :2]
    off = s @ (m[:, 2] + m[:, :2] @ [0.5, 0.5]) - 0.5
    return np.column_stack([lin, off])


def fit_face(img, mask, quad, resolution):
    """uint8 [H, W, 3] photo, float32 [H, W] mask (1 = known) and the face's quad -> (float32 [3, R, R] canvas in
    [-1, 1] with holes zeroed, float32 [1, R, R] binary mask, FaceFrame).

    The hole is filled with the mean known colour around the face first (what was under it never reaches the
    model). A face larger than the frame is first shrunk with area averaging so that the warp does not alias, its
    hole mask with a conservative resize; the mask warp is conservative too (a model pixel is known only if no
    hole pixel is within reach of its bilinear sample, plus one pixel). Outside the photo, photo and mask are
    reflected.
    """
    h, w = img.shape[:2]
    r = resolution
    frame = FaceFrame(np.asarray(quad, np.float64), r, h, w, 0)
    # Only the quad's bounding box (and a pixel for the bilinear taps) can reach the canvas: work on that region.
    # Where the quad leaves the photo the region's edge is the photo's, so the reflection is the same.
    (x0, y0), (x1, y1) = np.floor(frame.quad.min(0)) - 2, np.ceil(frame.quad.max(0)) + 2
    x0, y0 = int(min(max(x0, 0), w - 1)), int(min(max(y0, 0), h - 1))
    x1, y1 = int(max(min(x1, w), x0 + 1)), int(max(min(y1, h), y0 + 1))
    src, hole = _fill_holes_with_mean(img[y0:y1, x0:x1], mask[y0:y1, x0:x1]), (mask[y0:y1, x0:x1] != 1)
    to_src = frame.model_to_image() - np.column_stack([np.zeros((2, 2)), [x0, y0]])
    sx = sy = 1.0
    if frame.scale < 1:
        sh, sw = hole.shape
        nw, nh = max(1, round(sw * frame.scale)), max(1, round(sh * frame.scale))
        src = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA)
        hole = _any_resize(hole, nh, nw)
        sx, sy = nw / sw, nh / sh
    m = _to_cv(to_src, (sx, sy))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    canvas = cv2.warpAffine(src, m, (r, r), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    canvas_hole = cv2.warpAffine(hole.astype(np.float32), m, (r, r), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    canvas_hole = scipy.ndimage.binary_dilation(canvas_hole > 0, np.ones((3, 3), bool))
    canvas_mask = (~canvas_hole).astype(np.float32)
    out = (canvas.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1) * canvas_mask[None]
    outside = _hole_outside(mask, frame)
    return np.ascontiguousarray(out), canvas_mask[None], dataclasses.replace(frame, hole_outside=outside)


def _hole_model_coords(mask, frame):
    ys, xs = np.nonzero(mask != 1)
    pts = np.stack([xs + 0.5, ys + 0.5], axis=1)
    inv = _invert(frame.model_to_image())
    return ys, xs, pts @ inv[:, :2].T + inv[:, 2]


def _hole_outside(mask, frame):
    # A hole pixel is fillable if its centre maps at least half a model pixel inside the frame.
    _, _, uv = _hole_model_coords(mask, frame)
    inside = ((uv >= 0.5) & (uv <= frame.resolution - 0.5)).all(axis=1)
    return int((~inside).sum())


def _hole_box(mask, pad, h, w):
    rows, cols = np.flatnonzero((mask != 1).any(axis=1)), np.flatnonzero((mask != 1).any(axis=0))
    return max(0, rows[0] - pad), max(0, cols[0] - pad), min(h, rows[-1] + 1 + pad), min(w, cols[-1] + 1 + pad)


def feather_width(frame):
    """Image pixels over which the completion is blended in at the hole's edge: one model pixel, at least one."""
    return int(min(MAX_FEATHER, max(1, round(1.0 / frame.scale))))


def paste_face(output, img, mask, frame):
    """Model output float [3, R, R] in [-1, 1] -> uint8 [H, W, 3]: the completion warped back (bicubic) into the
    hole, every pixel outside the hole kept exactly.

    The hole's edge is feathered over feather_width(frame) pixels inside the hole, so the twice-resampled
    completion meets the untouched photo without a step: there each hole pixel is a blend of the completion and
    the colour of the nearest known pixel (never of what was under the hole).
    """
    h, w = img.shape[:2]
    f = feather_width(frame)
    t, l, b, r = _hole_box(mask, f + 1, h, w)
    out = np.asarray(output, dtype=np.float32)
    out = np.clip(np.rint((out.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    # Region pixel (i, j) -> image (t + i, l + j) -> model coordinates.
    to_model = _invert(frame.model_to_image())
    to_model = np.column_stack([to_model[:, :2], to_model[:, 2] + to_model[:, :2] @ [l, t]])
    back = cv2.warpAffine(out, _to_cv(to_model), (r - l, b - t), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    hole = mask[t:b, l:r] != 1
    dist, (iy, ix) = scipy.ndimage.distance_transform_edt(hole, return_indices=True)
    alpha = np.clip(dist / (f + 1), 0.0, 1.0)[..., None]
    region = img[t:b, l:r]
    nearest = region[iy, ix].astype(np.float32)
    blend = np.clip(np.rint(alpha * back + (1 - alpha) * nearest), 0, 255).astype(np.uint8)
    result = img.copy()
    result[t:b, l:r] = np.where(hole[..., None], blend, region)
    return result
