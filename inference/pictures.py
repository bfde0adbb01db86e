"""Pictures for people: the input with its hole shown, grids of results, PNG writing, masks as on disk."""

import numpy as np
import PIL.Image

HOLE_DISPLAY_COLOR = (255, 255, 255)  # how the hole is drawn in the grid's input column


def show_hole(img, mask, color=HOLE_DISPLAY_COLOR):
    """The input as the user should see it in a grid: hole pixels painted in a flat colour."""
    return np.where((mask == 1)[..., None], img, np.array(color, dtype=np.uint8)).astype(np.uint8)


def make_grid(images, cols=None, gap=2, background=0):
    """Tile equally sized uint8 [H, W, 3] images row-major with `gap` pixels between them."""
    cols = min(len(images), cols or len(images))
    rows = -(-len(images) // cols)
    h, w = images[0].shape[:2]
    sheet = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), background, dtype=np.uint8)
    for idx, im in enumerate(images):
        r, c = divmod(idx, cols)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = im
    return sheet


def save_png(arr, path):
    PIL.Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


def mask_to_png(mask):
    """float32 [H, W] (1 = known) -> uint8 [H, W] in the on-disk convention (white = hole)."""
    return np.where(mask == 1, 0, 255).astype(np.uint8)
