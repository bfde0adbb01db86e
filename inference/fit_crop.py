"""The `crop` fit strategy: a square window around each group of holes, with context around it, goes to the model
at the photo's native resolution when it fits, and only the hole pixels come back.

A window's side is twice the side of its holes' bounding box (a context margin of half the box on every side),
at least the model resolution R when the photo is that large, and at most the photo's longer side. The window
then meets the model through the `resize` policy (inference.fit_resize) at scale R / side: 1 when the holes fit
in R / 2, less only as much as larger holes need, more only for a photo smaller than R (which then goes whole).
Holes whose windows would overlap share one window; far-apart holes get one window each.
"""

import dataclasses
import math

import numpy as np
import scipy.ndimage

from inference.fit_resize import fit_to_model, paste_back, plan_fit

CONTEXT_MARGIN = 0.5  # context on each side of the holes' bounding box, as a fraction of the box's side


@dataclasses.dataclass(frozen=True)
class CropPlan:
    """One window of the photo and the holes it fills."""

    top: int  # the window, inside the photo
    left: int
    height: int
    width: int
    hole_box: tuple  # (top, left, bottom, right) of the holes filled from this window
    resolution: int

    @property
    def scale(self):
        """Model pixels per photo pixel for this window."""
        return plan_fit(self.height, self.width, self.resolution).scale

    @property
    def slices(self):
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def _axis(lo, hi, side, n):
    """Start and length of a window of `side` pixels centred on [lo, hi), kept inside [0, n)."""
    if side >= n:
        return 0, n
    start = int(round((lo + hi - side) / 2))
    return min(max(start, 0), n - side), side


def _window(box, height, width, resolution, margin):
    t, l, b, r = box
    side = math.ceil(max(b - t, r - l) * (1 + 2 * margin))
    side = min(max(side, resolution), max(height, width))
    top, h = _axis(t, b, side, height)
    left, w = _axis(l, r, side, width)
    return top, left, h, w


def _overlap(a, b):
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _union(a, b):
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def plan_crops(mask, resolution, margin=CONTEXT_MARGIN):
    """The windows for a float [H, W] mask (1 = known), top to bottom. Each connected hole starts a group;
    groups whose windows overlap are merged until none do."""
    height, width = mask.shape
    labels, _ = scipy.ndimage.label(mask != 1, structure=np.ones((3, 3), bool))
    boxes = [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in scipy.ndimage.find_objects(labels)]
    merged = True
    while merged:
        merged = False
        windows = [_window(box, height, width, resolution, margin) for box in boxes]
        for i in range(len(boxes)):
            j = next((j for j in range(i + 1, len(boxes)) if _overlap(windows[i], windows[j])), None)
            if j is not None:
                boxes[i] = _union(boxes[i], boxes.pop(j))
                merged = True
                break
    plans = [CropPlan(*_window(box, height, width, resolution, margin), box, resolution) for box in boxes]
    return sorted(plans, key=lambda p: (p.hole_box[0], p.hole_box[1]))


def fill_crops(img, mask, plans, fill):
    """Run `fill(canvas, canvas_mask) -> [outputs]` (one float [3, R, R] output per seed) on every window and
    paste each window's completion into its own holes. Returns one uint8 [H, W, 3] result per seed."""
    results = None
    for plan in plans:
        rows, cols = plan.slices
        sub_img, sub_mask = img[rows, cols], mask[rows, cols]
        canvas, canvas_mask, placement = fit_to_model(sub_img, sub_mask, plan.resolution)
        outs = fill(canvas, canvas_mask)
        if results is None:
            results = [img.copy() for _ in outs]
        t, l, b, r = plan.hole_box
        own = np.zeros(sub_mask.shape, bool)
        own[t - plan.top : b - plan.top, l - plan.left : r - plan.left] = True
        own &= sub_mask != 1
        for res, out in zip(results, outs):
            patch = paste_back(out, sub_img, sub_mask, placement)
            res[rows, cols][own] = patch[own]
    return results
