"""Draws docs/fit-strategies.png, the picture of the three fit strategies (inference.fitting) in docs/inference.md.

    python -m docs.make_fit_figure

The photo is scikit-image's astronaut (512 px) with a hole over an eye, and the model resolution is 128, which
puts the photo to the model as a 2048-pixel phone photo meets a 512 network. No network weights ship with the
project, so the "completion" is an oracle: the model's canvas of the photo's own pixels (what a perfect network
would paint), so that the picture shows what each strategy's resampling costs the hole and nothing else.
Columns: the input with the hole and the fit's overlay, what the model sees, the result, the hole magnified.
"""

import os

import numpy as np
import PIL.Image
import PIL.ImageDraw
import skimage.data

from inference import face_align, fit_crop
from inference.fit_resize import fit_to_model
from inference.fitting import fit_and_fill, pick_face
from inference.pictures import draw_fit, show_hole

RESOLUTION = 128
HOLE = (88, 183, 122, 228)  # top, left, bottom, right: over the eye on the image's left
ROW = 256  # pixels per row of the figure
ZOOM_PAD = 24
FIGURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fit-strategies.png")


def _clean_canvases(img, mask, fit):
    """The canvases each strategy will make, of the photo without its hole, in the order it makes them."""
    ones = np.ones_like(mask)
    if fit == "resize":
        return [fit_to_model(img, ones, RESOLUTION)[0]]
    if fit == "crop":
        plans = fit_crop.plan_crops(mask, RESOLUTION)
        return [fit_to_model(img[p.slices], ones[p.slices], RESOLUTION)[0] for p in plans]
    faces, index = pick_face(img, "astronaut")
    f = faces[index]
    return [face_align.fit_face(img, ones, face_align.ffhq_quad(f.right_eye, f.left_eye, f.mouth), RESOLUTION)[0]]


def _to_uint8(canvas):
    return np.clip(np.rint((canvas.transpose(1, 2, 0) + 1) * 127.5), 0, 255).astype(np.uint8)


def _fit(img, mask, fit):
    clean, seen = _clean_canvases(img, mask, fit), []

    def oracle(canvas, canvas_mask):
        seen.append(_to_uint8(canvas) * canvas_mask[0][..., None].astype(np.uint8))
        return [clean[len(seen) - 1]]

    (result,), report = fit_and_fill(img, mask, RESOLUTION, oracle, fit=fit)
    return result, report, seen[0]


def _tile(arr, size, label, nearest=False):
    im = PIL.Image.fromarray(arr).resize((size, size), PIL.Image.NEAREST if nearest else PIL.Image.LANCZOS)
    draw = PIL.ImageDraw.Draw(im)
    draw.rectangle([0, 0, 8 + 6 * len(label), 14], fill=(0, 0, 0))
    draw.text((4, 2), label, fill=(255, 255, 255))
    return np.asarray(im)


def main(out=FIGURE):
    img = skimage.data.astronaut()
    mask = np.ones(img.shape[:2], np.float32)
    t, l, b, r = HOLE
    mask[t:b, l:r] = 0
    zt, zl, zb, zr = t - ZOOM_PAD, l - ZOOM_PAD, b + ZOOM_PAD, r + ZOOM_PAD
    rows = []
    for fit in ("resize", "crop", "face"):
        result, report, seen = _fit(img, mask, fit)
        tiles = [_tile(draw_fit(show_hole(img, mask), report), ROW, f"{fit}: input and fit"),
                 _tile(seen, ROW, f"model sees {RESOLUTION}x{RESOLUTION}", nearest=True),
                 _tile(result, ROW, "result"),
                 _tile(result[zt:zb, zl:zr], ROW, "hole, magnified", nearest=True)]
        rows.append(np.concatenate([np.pad(x, ((2, 2), (2, 2), (0, 0))) for x in tiles], axis=1))
    rows.append(np.concatenate([np.pad(x, ((2, 2), (2, 2), (0, 0))) for x in [
        _tile(img, ROW, "original"), np.zeros((ROW, ROW, 3), np.uint8), np.zeros((ROW, ROW, 3), np.uint8),
        _tile(img[zt:zb, zl:zr], ROW, "original, magnified", nearest=True)]], axis=1))
    PIL.Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    print(out)


if __name__ == "__main__":
    main()
