"""The `resize` fit strategy: the whole image resized onto the generator's square canvas and the output resized
back, right for images that already are aligned crops (inference.fitting chooses between the strategies; the
`crop` strategy runs this same policy on a window of the photo).

Policy (the same for every image, whatever its size or aspect ratio):

1. Hole pixels of the original are replaced by the mean colour of its known pixels, so that whatever was painted
   over (or hidden) under the hole never leaks into the known context through the resampling filter.
2. The whole image is resized, aspect ratio kept, so that its longer side equals the model resolution R
   (Lanczos; downscale or upscale alike). Nothing is cropped away: an aligned face crop stays at the scale the
   model was trained on, and every known pixel contributes context.
3. The shorter side is reflect-padded to R x R; the mask is padded the same way, so padding that mirrors known
   content counts as known and padding that mirrors a hole counts as hole.
4. The mask is resized conservatively: a model pixel is known only if its whole footprint in the original is
   known (any overlap with a hole makes it a hole), so the generator fills every region the user asked for.
5. The generator's output is cropped back to the unpadded area, resized to the original size (Lanczos), and
   composited with the original in uint8: every known pixel of the original is kept bit-exactly, only hole
   pixels take the generated content.
"""

import dataclasses

import cv2
import numpy as np
import PIL.Image


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where an H x W image sits inside the R x R model canvas (resized to inner_h x inner_w, then padded)."""

    height: int
    width: int
    resolution: int
    inner_h: int
    inner_w: int
    pad_top: int
    pad_left: int

    @property
    def scale(self):
        """Model pixels per image pixel (1 = the image meets the model at its native resolution)."""
        return self.inner_w / self.width if self.width >= self.height else self.inner_h / self.height


def plan_fit(height, width, resolution):
    """Longer side -> resolution, aspect kept (at least 1 pixel), the rest split evenly as padding."""
    scale = resolution / max(height, width)
    inner_h = min(resolution, max(1, round(height * scale)))
    inner_w = min(resolution, max(1, round(width * scale)))
    pad_top, pad_left = (resolution - inner_h) // 2, (resolution - inner_w) // 2
    return Placement(height, width, resolution, inner_h, inner_w, pad_top, pad_left)


def _resize_rgb(img, width, height):
    if img.shape[1] == width and img.shape[0] == height:
        return img.copy()
    return np.asarray(PIL.Image.fromarray(img).resize((width, height), PIL.Image.LANCZOS))


def _footprints(size, out_size):
    # Source index range [lo, hi) that overlaps each output pixel's footprint, in exact integer arithmetic.
    i = np.arange(out_size, dtype=np.int64)
    lo = (i * size) // out_size
    hi = np.maximum(lo + 1, -((-(i + 1) * size) // out_size))
    return lo, hi


def _any_resize(flags, out_h, out_w):
    """bool [H, W] -> bool [out_h, out_w]: True where any source pixel under the output pixel's footprint is True
    (a conservative resize: an output pixel is clear only if its whole footprint is clear)."""
    lo, hi = _footprints(flags.shape[0], out_h)
    cs = np.concatenate([np.zeros((1, flags.shape[1]), np.int64), np.cumsum(flags, axis=0, dtype=np.int64)])
    rows = (cs[hi] - cs[lo]) > 0
    lo, hi = _footprints(flags.shape[1], out_w)
    cs = np.concatenate([np.zeros((out_h, 1), np.int64), np.cumsum(rows, axis=1, dtype=np.int64)], axis=1)
    return (cs[:, hi] - cs[:, lo]) > 0


def _pad_to_canvas(arr, p):
    pads = [(p.pad_top, p.resolution - p.inner_h - p.pad_top), (p.pad_left, p.resolution - p.inner_w - p.pad_left)]
    pads += [(0, 0)] * (arr.ndim - 2)
    # np.pad's reflect mode reflects repeatedly, so it also covers pads longer than the image (thin strips).
    return np.pad(arr, pads, mode="reflect") if max(arr.shape[:2]) > 1 else np.pad(arr, pads, mode="edge")


def _fill_holes_with_mean(img, mask):
    known = (mask == 1).astype(np.uint8)
    # cv2.mean with a mask: a boolean gather of a 12-megapixel photo took seconds.
    colour = np.round(cv2.mean(img, mask=known)[:3]) if known.any() else np.full(3, 128.0)
    return np.where(known[..., None] == 1, img, colour.astype(np.uint8))


def fit_to_model(img, mask, resolution):
    """uint8 [H, W, 3] image and float32 [H, W] mask (1 = known) -> (float32 [3, R, R] in [-1, 1] with holes
    zeroed, float32 [1, R, R] binary mask, Placement). See the module docstring for the policy."""
    p = plan_fit(img.shape[0], img.shape[1], resolution)
    small = _resize_rgb(_fill_holes_with_mean(img, mask), p.inner_w, p.inner_h)
    small_mask = 1.0 - _any_resize(mask != 1, p.inner_h, p.inner_w).astype(np.float32)
    canvas = _pad_to_canvas(small, p).astype(np.float32) / 127.5 - 1.0
    canvas_mask = _pad_to_canvas(small_mask, p)
    canvas = canvas.transpose(2, 0, 1) * canvas_mask[None]
    return np.ascontiguousarray(canvas), canvas_mask[None].copy(), p


def paste_back(output, img, mask, p):
    """Model output float [3, R, R] in [-1, 1] -> uint8 [H, W, 3] at the original size, known pixels of `img`
    kept exactly (the composite is done in uint8, after every resampling step)."""
    top, left = p.pad_top, p.pad_left
    out = np.asarray(output, dtype=np.float32)[:, top : top + p.inner_h, left : left + p.inner_w]
    out = np.clip(np.rint((out.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    full = _resize_rgb(out, p.width, p.height)
    return np.where((mask == 1)[..., None], img, full)
