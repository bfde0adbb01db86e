"""Inpainting of users' own images at any size: fitting an image and its mask to the generator's resolution,
running the generator over several seeds, and pasting the result back at the original size.

Fit policy (the same for every image, whatever its size or aspect ratio):

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

Each seed gives its own latent z = np.random.RandomState(seed).randn(z_dim) (the stylegan2-ada convention);
with noise_mode 'random' (and any other randomness inside G, such as dropout on the global code) the torch RNG
is also seeded per seed, so a result depends on the seed only, never on the batch it ran in.
"""

import dataclasses
import os
import re
import zlib

import numpy as np
import PIL.Image
import torch
import tqdm

from dnnlib import EasyDict, UserError
from torch_utils.misc import assert_mask_convention
from training.image_io import is_image_name, read_image_rgb, read_mask_file

MASK_SUFFIX = "_mask"  # `face_mask.png` is the mask of `face.png`
HOLE_DISPLAY_COLOR = (255, 255, 255)  # how the hole is drawn in the grid's input column


class InpaintError(UserError):
    """A problem with one input file (unreadable image, mask of the wrong size, mask without a hole...)."""


# ---------------------------------------------------------------------------------------------------------------------
# Seeds.


def parse_seeds(text):
    """'0-7' -> [0..7]; '1,3,10-12' -> [1, 3, 10, 11, 12]. Raises UserError naming --seeds on bad input."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"--seeds {text!r}: '{part}' is not a number or a range like 0-7")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise UserError(f"--seeds {text!r}: range '{part}' goes backwards")
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise UserError(f"--seeds {text!r}: no seeds given")
    return seeds


def seed_to_z(seed, z_dim):
    """The latent of one seed: float32 [z_dim], independent of batching and of the device."""
    return np.random.RandomState(seed).randn(z_dim).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Fitting an image to the model and back.


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
    known = mask == 1
    out = img.copy()
    if known.any():
        out[~known] = np.round(img[known].reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    else:
        out[:] = 128
    return out


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


# ---------------------------------------------------------------------------------------------------------------------
# Running the generator.


def _run_generator(G, canvas, canvas_mask, seeds, device, truncation_psi, noise_mode, dropout, seed_torch):
    img = torch.from_numpy(canvas).to(device)[None].repeat(len(seeds), 1, 1, 1)
    mask = torch.from_numpy(canvas_mask).to(device)[None].repeat(len(seeds), 1, 1, 1)
    assert_mask_convention(mask, "inpaint mask")
    z = torch.from_numpy(np.stack([seed_to_z(s, G.z_dim) for s in seeds])).to(device)
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed_torch:
            torch.manual_seed(seeds[0])
        out = G(img, mask, z=z, truncation_psi=truncation_psi, noise_mode=noise_mode, dropout=dropout)
    return out.float().cpu().numpy()


def inpaint_image(G, img, mask, seeds, *, device, truncation_psi=1.0, noise_mode="const", dropout=False,
                  batch_size=8):
    """Fill the holes of one uint8 [H, W, 3] image (mask float32 [H, W], 1 = known) once per seed.

    Returns one uint8 [H, W, 3] result per seed. With noise_mode 'const' and no dropout the seeds run batched
    (the output then depends on z only); with noise_mode 'random' or dropout=True (the global code's dropout,
    on at inference in the official code) each seed runs alone under its own torch seed so that results stay
    reproducible per seed whatever the batch size.
    """
    canvas, canvas_mask, p = fit_to_model(img, mask, G.img_resolution)
    per_seed_rng = noise_mode == "random" or dropout
    step = 1 if per_seed_rng else max(1, int(batch_size))
    results = []
    for i in range(0, len(seeds), step):
        chunk = list(seeds[i : i + step])
        outs = _run_generator(G, canvas, canvas_mask, chunk, device, truncation_psi, noise_mode, dropout,
                              per_seed_rng)
        results.extend(paste_back(o, img, mask, p) for o in outs)
    return results


# ---------------------------------------------------------------------------------------------------------------------
# Pictures.


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


# ---------------------------------------------------------------------------------------------------------------------
# Matching images to masks.


def _is_image(path):
    return os.path.isfile(path) and is_image_name(path)


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def list_images(images_path, exclude_masks=False):
    """An image file, or the image files of a folder (not recursive), sorted by name."""
    if os.path.isfile(images_path):
        return [images_path]
    if not os.path.isdir(images_path):
        raise UserError(f"--images {images_path}: no such file or folder")
    files = sorted(os.path.join(images_path, f) for f in os.listdir(images_path))
    files = [f for f in files if _is_image(f) and not (exclude_masks and _stem(f).endswith(MASK_SUFFIX))]
    if not files:
        raise UserError(f"--images {images_path}: the folder holds no image files (png, jpg, webp, bmp)")
    return files


def find_mask_file(image_path, masks_path):
    """The mask of `image_path`: masks_path itself if it is a file, else `<stem>.*` or `<stem>_mask.*` in the
    folder masks_path (the `_mask` name first, so a folder holding both images and masks works)."""
    if os.path.isfile(masks_path):
        return masks_path
    stem = _stem(image_path)
    by_stem = {}
    for f in sorted(os.listdir(masks_path)):
        full = os.path.join(masks_path, f)
        if _is_image(full) and os.path.abspath(full) != os.path.abspath(image_path):
            by_stem.setdefault(_stem(f), full)
    for key in (stem + MASK_SUFFIX, stem):
        if key in by_stem:
            return by_stem[key]
    raise InpaintError(f"{image_path}: no mask in {masks_path} (looked for {stem}{MASK_SUFFIX}.* and {stem}.*)")


def spec_mask_for_image(spec, height, width, image_path, mask_seed):
    """A generated mask for an H x W image: drawn at the square max(H, W) and center-cropped, so a `center`
    hole stays centered. Depends only on (spec, size, file stem, mask_seed): reruns reproduce it."""
    from training.masks import eval_mask

    side = max(height, width)
    index = zlib.crc32(_stem(image_path).encode("utf-8")) & 0x7FFFFFFF
    square = np.asarray(eval_mask(spec, side, mask_seed, index), dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    return np.ascontiguousarray(square[top : top + height, left : left + width])


def load_pair(image_path, mask_source, *, mask_is_spec, mask_hole, mask_seed):
    """(uint8 [H, W, 3], float32 [H, W] mask) for one image, with per-file checks raising InpaintError."""
    try:
        img = read_image_rgb(image_path)
    except UserError as err:
        raise InpaintError(str(err)) from None
    h, w = img.shape[:2]
    if mask_is_spec:
        mask = spec_mask_for_image(mask_source, h, w, image_path, mask_seed)
        name = f"mask spec '{mask_source}'"
    else:
        mask_path = find_mask_file(image_path, mask_source)
        try:
            mask = read_mask_file(mask_path, hole=mask_hole)
        except UserError as err:
            raise InpaintError(str(err)) from None
        name = f"mask {mask_path}"
        if mask.shape != (h, w):
            raise InpaintError(
                f"{image_path}: {name} is {mask.shape[1]}x{mask.shape[0]} (WxH) but the image is {w}x{h}"
            )
    if mask.min() == 1:
        hint = "" if mask_is_spec else f" (holes are {mask_hole} in the file; see --mask-hole)"
        raise InpaintError(f"{image_path}: {name} has no hole{hint}")
    return img, mask


# ---------------------------------------------------------------------------------------------------------------------
# The whole generate.py job.


def _write_results(opts, image_path, img, mask, results, mask_is_spec):
    stem = _stem(image_path)
    paths = []
    for seed, res in zip(opts.seeds, results):
        paths.append(os.path.join(opts.outdir, f"{stem}-seed{seed:04d}.png"))
        save_png(res, paths[-1])
    if mask_is_spec:
        save_png(mask_to_png(mask), os.path.join(opts.outdir, f"{stem}-mask.png"))
    if opts.grid:
        cols = min(len(results) + 1, 9)
        paths.append(os.path.join(opts.outdir, f"{stem}-grid.png"))
        save_png(make_grid([show_hole(img, mask)] + list(results), cols=cols), paths[-1])
    return paths


def check_mask_spec(spec, resolution):
    """Validate a mask spec up front, so a typo stops the run before any image is processed."""
    from training.masks import make_mask_generator

    try:
        make_mask_generator(spec, resolution)
    except UserError as err:
        raise UserError(f"--masks {spec}: not an existing file or folder, nor a valid mask spec ({err})") from None


def run_generate(G, opts, device):
    """Inpaint every image of opts.images with the masks of opts.masks (folder, file or spec) for opts.seeds.

    opts: EasyDict(images, masks, seeds, outdir, truncation_psi, noise_mode, dropout, mask_hole, mask_seed, grid,
    batch_size). Per-file problems are collected, not raised; returns EasyDict(written=[paths],
    failures=[(image_path, message)], num_images).
    """
    mask_is_spec = not os.path.exists(opts.masks)
    if mask_is_spec:
        check_mask_spec(opts.masks, G.img_resolution)
    same_folder = os.path.isdir(opts.masks) and os.path.abspath(opts.masks) == os.path.abspath(opts.images)
    images = list_images(opts.images, exclude_masks=same_folder)
    os.makedirs(opts.outdir, exist_ok=True)
    summary = EasyDict(written=[], failures=[], num_images=len(images))
    seen = {}
    for image_path in tqdm.tqdm(images, desc="inpainting", unit="img", disable=len(images) < 2):
        try:
            if _stem(image_path) in seen:  # face.png and face.jpg would write the same output files
                raise InpaintError(f"{image_path}: same name as {seen[_stem(image_path)]}; outputs would collide")
            seen[_stem(image_path)] = image_path
            img, mask = load_pair(image_path, opts.masks, mask_is_spec=mask_is_spec, mask_hole=opts.mask_hole,
                                  mask_seed=opts.mask_seed)
        except InpaintError as err:
            message = str(err) if image_path in str(err) else f"{image_path}: {err}"
            summary.failures.append((image_path, message))
            continue
        results = inpaint_image(G, img, mask, opts.seeds, device=device, truncation_psi=opts.truncation_psi,
                                noise_mode=opts.noise_mode, dropout=opts.dropout,
                                batch_size=opts.batch_size)
        summary.written.extend(_write_results(opts, image_path, img, mask, results, mask_is_spec))
    return summary
