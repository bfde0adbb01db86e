"""Criminisi, Perez and Toyama's exemplar-based inpainting ("Region filling and object removal by exemplar-based
image inpainting", IEEE TIP 2004), written here from the paper; metrics/baselines.py offers it as `criminisi`.

The algorithm, as implemented:

1. The fill front is every hole pixel with a known 8-neighbour. Each front pixel p gets the priority
   P(p) = C(p) * D(p): the confidence C(p) is the sum of the confidences of the known pixels of the patch centred at
   p divided by the patch's area (original pixels have confidence 1, hole pixels 0); the data term
   D(p) = |isophote . normal| / 255, with the isophote the image gradient rotated by 90 degrees, taken where the
   gradient is strongest among the patch's known pixels (Sobel on the 8-bit CIE Lab lightness, only where the 3x3
   neighbourhood is known), and the normal the unit gradient of the known-pixel map at p.
2. The front pixel of highest priority is filled first (ties: the first in raster order).
3. Its patch is compared with every candidate source patch, a patch whose pixels are all known in the input, by
   the sum of squared differences in CIE Lab over the target patch's known pixels; the best one's pixels are copied
   into the patch's unknown pixels (ties: the first in raster order of the search window), which take the
   confidence C(p).
4. Repeat until no hole remains. Only the front around the filled patch changes, so only its priorities are
   recomputed.

Where no 9x9 patch of the image is fully known (a 32 px image with a centre hole), the patch shrinks to the largest
odd size that has one (7, 5 or 3). Where not even a 3x3 patch is (a hole of over 90 % in a 32 px image), the last
resort takes 3x3 candidates whose centre is known, compares them by the mean squared difference over the pixels
known in both, and copies only their known pixels. So an evaluation of small images never stops halfway.

The search is one vectorised masked SSD per step over all candidates at once, expanded as
sum(w * S^2) - 2 sum(w * T * S) + sum(w * T^2) (w: the target's known pixels, T: the target, S: a candidate) and
computed by four OpenCV correlations (`cv2.filter2D`), never a Python loop per candidate. It covers the candidate
centres within SEARCH_RADIUS pixels of the target, widened (doubling) until the window holds MIN_CANDIDATES
candidates; `search_radius=None` searches the whole image as the paper does (6.5x the CPU time at 512 px, and no better:
benchmarks/criminisi_search.py).
"""

import cv2
import numpy as np

from dnnlib import UserError

PATCH_SIZE = 9  # patch side in pixels: the paper's 9x9
SEARCH_RADIUS = 32  # candidate patch centres within this many pixels of the target, each way (None: whole image)
MIN_CANDIDATES = 256  # the search window doubles until it holds this many fully known candidate patches
ALPHA = 255.0  # the paper's normalisation of the data term for 8-bit images
DATA_FLOOR = 1e-3  # added to D: where no front pixel meets an edge, the most confident one goes first (not raster)

_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8  # gradient in intensity units per pixel
_SOBEL_Y = _SOBEL_X.T.copy()
_window = np.lib.stride_tricks.sliding_window_view


def check_inputs(image, known, patch_size=PATCH_SIZE, search_radius=SEARCH_RADIUS):
    """Raise a ValueError for a wrong shape or type, a UserError for a mask with nothing to fill or to copy from."""
    image, known = np.asarray(image), np.asarray(known)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"criminisi: image must be uint8 RGB [H, W, 3], got {image.dtype} {list(image.shape)}")
    if known.shape != image.shape[:2]:
        raise ValueError(f"criminisi: mask must be [H, W] = {list(image.shape[:2])} (1 = known), "
                         f"got {list(known.shape)}")
    if known.dtype != bool and not (np.issubdtype(known.dtype, np.floating) and np.isin(known, (0, 1)).all()):
        raise ValueError(f"criminisi: mask must be bool or float with 1 = known pixel and 0 = hole, got {known.dtype}")
    if not isinstance(patch_size, int) or patch_size < 3 or patch_size % 2 == 0:
        raise ValueError(f"criminisi: patch_size must be an odd integer >= 3, got {patch_size!r}")
    if search_radius is not None and (not isinstance(search_radius, int) or search_radius < 1):
        raise ValueError(f"criminisi: search_radius must be a positive integer or None, got {search_radius!r}")
    if known.all():
        raise UserError("criminisi: the mask has no hole (nothing to fill)")
    if not known.any():
        raise UserError("criminisi: the whole image is a hole (nothing to copy from)")


def inpaint(image, known, patch_size=PATCH_SIZE, search_radius=SEARCH_RADIUS):
    """Fill the holes of one image: image uint8 RGB [H, W, 3], known [H, W] (bool, or float with 1 = known pixel,
    0 = hole) -> uint8 RGB [H, W, 3]. Known pixels come back unchanged; every hole pixel is a copy of an input pixel.
    Deterministic. Where no patch_size x patch_size patch of the image is fully known (a small image, a wide hole),
    the patch shrinks, and without a fully known 3x3 patch the partly known ones serve (see choose_patch)."""
    check_inputs(image, known, patch_size, search_radius)
    known = np.asarray(known).astype(bool)
    fill = _Fill(np.asarray(image), known, *choose_patch(known, patch_size), search_radius)
    fill.run()
    return fill.result()


def choose_patch(known, patch_size=PATCH_SIZE):
    """(size, partial): the largest odd size <= patch_size (and >= 3) with a fully known patch inside the image, and
    False; (3, True) if there is none: candidates are then the 3x3 patches whose centre is known."""
    for size in range(patch_size, 2, -2):
        if cv2.erode(known.astype(np.uint8), np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0).any():
            return size, False
    return 3, True


def _correlate(image, kernel):
    """out[i, j] = sum(kernel * image[i : i + kh, j : j + kw]) for every (i, j) where the kernel fits (and some
    rows and columns past them, which the caller drops)."""
    return cv2.filter2D(image, -1, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)


class _Fill:
    """The state of one fill. Arrays are padded by `m` pixels (outside the image: not known, not a hole) so that
    patches and their neighbourhoods never need clipping; (y, x) below are padded coordinates."""

    def __init__(self, image, known, patch_size, partial, search_radius):
        self.r = r = patch_size // 2
        self.k = patch_size
        self.m = m = 3 * r + 2  # a priority update reads up to 3r + 1 pixels from the filled patch's centre
        self.h, self.w = image.shape[:2]
        self.search_radius = search_radius

        def pad(a, value=0):
            return np.pad(a, [(m, m), (m, m)] + [(0, 0)] * (a.ndim - 2), constant_values=value)

        self.rgb = pad(image)
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
        self.lab = np.stack([pad(lab[..., c]) for c in range(3)])  # planar: each channel correlates on its own
        self.inside = pad(np.ones_like(known))
        self.known = pad(known)
        self.conf = self.known.astype(np.float32)
        self.sq = (self.lab**2).sum(axis=0)  # only the original known pixels are read through it (valid candidates)
        box = np.ones((patch_size, patch_size), np.uint8)
        self.partial = partial
        if partial:  # the sources' known pixels, and the source planes with the hole's placeholders zeroed
            self.source = self.known.astype(np.float32)
            self.source_lab, self.source_sq = self.lab * self.source, self.sq * self.source
            self.valid = self.known.copy()
        else:
            self.valid = cv2.erode(self.known.astype(np.uint8), box, borderValue=0).astype(bool)
        assert self.valid.any(), "choose_patch() chooses a size with a candidate"
        self.valid_sum = cv2.integral(self.valid.astype(np.uint8))  # counts candidates in a window in O(1)
        self.area = cv2.filter2D(self.inside.astype(np.float32), -1, box.astype(np.float32),
                                 borderType=cv2.BORDER_CONSTANT)  # |patch| inside the image
        self.gx = np.zeros(self.known.shape, np.float32)
        self.gy = np.zeros_like(self.gx)
        self.g2 = np.zeros_like(self.gx)
        self._update_gradients(1, self.known.shape[0] - 1, 1, self.known.shape[1] - 1)
        self.front = np.zeros_like(self.known)
        self.prio = np.full(self.known.shape, -1.0)
        self._update_front(1, self.known.shape[0] - 1, 1, self.known.shape[1] - 1)
        self._update_priorities(0, self.known.shape[0], 0, self.known.shape[1])
        self.remaining = int((~known).sum())

    def run(self):
        while self.remaining:
            best = int(np.argmax(self.prio))  # ties: the first in raster order
            if self.prio.flat[best] < 0:
                raise RuntimeError("criminisi: holes remain but the fill front is empty")  # cannot happen
            self._fill_patch(*divmod(best, self.prio.shape[1]))

    def result(self):
        m = self.m
        return self.rgb[m : m + self.h, m : m + self.w].copy()

    def _fill_patch(self, cy, cx):
        r = self.r
        sy, sx = self._best_source(cy, cx)
        tgt = np.s_[cy - r : cy + r + 1, cx - r : cx + r + 1]
        src = np.s_[sy - r : sy + r + 1, sx - r : sx + r + 1]
        todo = ~self.known[tgt] & self.inside[tgt]
        if self.partial:
            todo &= self.source[src] > 0
        confidence = self.conf[tgt].sum() / self.area[cy, cx]
        self.lab[(slice(None), *tgt)][:, todo] = self.lab[(slice(None), *src)][:, todo]
        self.rgb[tgt][todo] = self.rgb[src][todo]
        self.conf[tgt][todo] = confidence
        self.known[tgt][todo] = True
        self.remaining -= int(todo.sum())
        # Gradients and the front change within one pixel of the patch; priorities read a patch around each pixel.
        self._update_gradients(cy - r - 1, cy + r + 2, cx - r - 1, cx + r + 2)
        self._update_front(cy - r - 1, cy + r + 2, cx - r - 1, cx + r + 2)
        self._update_priorities(cy - 2 * r - 1, cy + 2 * r + 2, cx - 2 * r - 1, cx + 2 * r + 2)

    def _best_source(self, cy, cx):
        """Centre of the candidate patch closest to the target patch at (cy, cx) in SSD over its known pixels."""
        r = self.r
        target = self.lab[:, cy - r : cy + r + 1, cx - r : cx + r + 1]
        weight = self.known[cy - r : cy + r + 1, cx - r : cx + r + 1].astype(np.float32)
        y0, y1, x0, x1 = self._search_window(cy, cx)
        rows, cols = np.s_[y0 - r : y1 + r + 1], np.s_[x0 - r : x1 + r + 1]
        if self.partial:
            ssd = self._partial_msd(target, weight, rows, cols)
        else:
            # sum(w * S^2) - 2 sum(w * T * S); the constant sum(w * T^2) does not change the order. filter2D
            # correlates (no kernel flip) and, for 9x9 kernels, runs several times faster here than matchTemplate.
            ssd = _correlate(self.sq[rows, cols], weight)
            for plane, tplane in zip(self.lab, target):
                ssd -= 2 * _correlate(plane[rows, cols], weight * tplane)
        ssd = ssd[: y1 - y0 + 1, : x1 - x0 + 1]
        ssd[~self.valid[y0 : y1 + 1, x0 : x1 + 1]] = np.inf
        best = int(np.argmin(ssd))  # ties: the first in raster order of the window
        return y0 + best // ssd.shape[1], x0 + best % ssd.shape[1]

    def _partial_msd(self, target, weight, rows, cols):
        """The last resort's distance: mean squared difference over the pixels known in both the target and the
        candidate (w_s the candidate's known pixels); candidates sharing no known pixel with the target go last."""
        source = self.source[rows, cols]
        overlap = _correlate(source, weight)
        total = _correlate(self.source_sq[rows, cols], weight) + _correlate(source, weight * (target**2).sum(axis=0))
        for plane, tplane in zip(self.source_lab, target):
            total -= 2 * _correlate(plane[rows, cols], weight * tplane)
        return np.where(overlap > 0.5, np.maximum(total, 0) / np.maximum(overlap, 1), np.finfo(np.float32).max)

    def _search_window(self, cy, cx):
        """Inclusive bounds (y0, y1, x0, x1) of the candidate centres searched for the target at (cy, cx)."""
        lo_y, hi_y, lo_x, hi_x = self.m, self.m + self.h - 1, self.m, self.m + self.w - 1
        if self.search_radius is None:
            return lo_y, hi_y, lo_x, hi_x
        radius = self.search_radius
        while True:
            y0, y1 = max(cy - radius, lo_y), min(cy + radius, hi_y)
            x0, x1 = max(cx - radius, lo_x), min(cx + radius, hi_x)
            s = self.valid_sum
            count = s[y1 + 1, x1 + 1] - s[y0, x1 + 1] - s[y1 + 1, x0] + s[y0, x0]
            if count >= MIN_CANDIDATES or (y0, y1, x0, x1) == (lo_y, hi_y, lo_x, hi_x):
                return y0, y1, x0, x1
            radius *= 2

    def _update_gradients(self, y0, y1, x0, x1):
        """Lightness gradient in rows y0:y1, columns x0:x1, zero where a 3x3 neighbour is unknown (a hole's
        placeholder values must not make edges)."""
        block = np.s_[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1]
        light = self.lab[0][block]
        ok = cv2.erode(self.known[block].astype(np.uint8), np.ones((3, 3), np.uint8))[1:-1, 1:-1].astype(bool)
        gx = cv2.filter2D(light, -1, _SOBEL_X)[1:-1, 1:-1] * ok
        gy = cv2.filter2D(light, -1, _SOBEL_Y)[1:-1, 1:-1] * ok
        self.gx[y0:y1, x0:x1], self.gy[y0:y1, x0:x1] = gx, gy
        self.g2[y0:y1, x0:x1] = gx * gx + gy * gy

    def _update_front(self, y0, y1, x0, x1):
        block = np.s_[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1]
        near_known = cv2.dilate(self.known[block].astype(np.uint8), np.ones((3, 3), np.uint8))[1:-1, 1:-1]
        inner = np.s_[y0:y1, x0:x1]
        self.front[inner] = near_known.astype(bool) & ~self.known[inner] & self.inside[inner]

    def _update_priorities(self, y0, y1, x0, x1):
        y0, x0 = max(y0, self.m), max(x0, self.m)  # no front outside the image
        y1, x1 = min(y1, self.m + self.h), min(x1, self.m + self.w)
        self.prio[y0:y1, x0:x1] = -1.0
        ys, xs = np.nonzero(self.front[y0:y1, x0:x1])
        if len(ys):
            ys, xs = ys + y0, xs + x0
            self.prio[ys, xs] = self._priorities(ys, xs)

    def _priorities(self, ys, xs):
        """P = C * D of the front pixels (ys, xs)."""
        r, k = self.r, self.k
        confidence = _window(self.conf, (k, k))[ys - r, xs - r].sum(axis=(1, 2)) / self.area[ys, xs]
        strongest = _window(self.g2, (k, k))[ys - r, xs - r].reshape(len(ys), -1).argmax(axis=1)
        gy_at, gx_at = ys - r + strongest // k, xs - r + strongest % k
        iso_x, iso_y = -self.gy[gy_at, gx_at], self.gx[gy_at, gx_at]  # the isophote: the gradient turned 90 degrees
        around = _window(self.known, (3, 3))[ys - 1, xs - 1].astype(np.float32)
        nx, ny = (around * _SOBEL_X).sum(axis=(1, 2)), (around * _SOBEL_Y).sum(axis=(1, 2))
        norm = np.hypot(nx, ny)
        norm[norm == 0] = np.inf  # no defined normal (a lone pixel): no data term
        data = np.abs(iso_x * nx + iso_y * ny) / norm / ALPHA
        return confidence * (data + DATA_FLOOR)
