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


# Overlay colours of the fit strategies (the grid's input column).
CROP_COLOR = (255, 200, 0)  # each crop window
FACE_BOX_COLOR = (0, 190, 255)  # every detected face's box
FRAME_COLOR = (0, 230, 0)  # the chosen face's model frame (FFHQ quad); its top edge is drawn thicker
LANDMARK_COLORS = {"right_eye": (255, 0, 0), "left_eye": (255, 0, 0), "nose": (255, 0, 255),
                   "mouth": (0, 0, 255), "right_ear": (255, 128, 0), "left_ear": (255, 128, 0)}


def draw_fit(picture, report):
    """The fit strategy's choices drawn over a uint8 [H, W, 3] picture of the input: the crop windows, or the
    faces found, the chosen one's landmarks and the square it was framed by (inference.fitting.FitReport)."""
    import PIL.ImageDraw

    canvas = PIL.Image.fromarray(np.asarray(picture, dtype=np.uint8))
    draw = PIL.ImageDraw.Draw(canvas)
    lw = max(1, round(max(canvas.size) / 256))
    for plan in report.crops:
        draw.rectangle([plan.left, plan.top, plan.left + plan.width - 1, plan.top + plan.height - 1],
                       outline=CROP_COLOR, width=lw)
    for face in report.faces:
        draw.rectangle([round(v) for v in face.box], outline=FACE_BOX_COLOR, width=lw)
    if report.quad is not None:
        corners = [tuple(float(v) for v in p) for p in report.quad]
        draw.line(corners + corners[:1], fill=FRAME_COLOR, width=lw)
        draw.line([corners[0], corners[3]], fill=FRAME_COLOR, width=2 * lw + 1)
    if report.face is not None:
        r = 1.5 * lw + 1
        for key, (x, y) in report.face.keypoints.items():
            draw.ellipse([x - r, y - r, x + r, y + r], fill=LANDMARK_COLORS[key])
    return np.asarray(canvas)
