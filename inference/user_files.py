"""The generate.py job over users' files: listing images, matching each to its mask file or a mask spec,
inpainting every seed and writing the results (and per-file errors instead of a stopped run)."""

import os
import zlib

import tqdm

from data.image_io import is_image_name, read_image_rgb, read_mask_file
from dnnlib import EasyDict, UserError, check_output_path
from inference.fitting import FitError
from inference.inpaint import InpaintError, inpaint_photo
from inference.pictures import draw_fit, make_grid, mask_to_png, save_png, show_hole

MASK_SUFFIX = "_mask"  # `face_mask.png` is the mask of `face.png`


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
    """A generated mask for an H x W image (data.masks.eval_mask_for_size). Depends only on (spec, size, file stem,
    mask_seed): reruns reproduce it."""
    from data.masks import eval_mask_for_size

    index = zlib.crc32(_stem(image_path).encode("utf-8")) & 0x7FFFFFFF
    return eval_mask_for_size(spec, height, width, mask_seed, index)


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


def _write_results(opts, image_path, img, mask, results, mask_is_spec, report):
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
        save_png(make_grid([draw_fit(show_hole(img, mask), report)] + list(results), cols=cols), paths[-1])
    return paths


def check_mask_spec(spec, resolution):
    """Validate a mask spec up front, so a typo stops the run before any image is processed."""
    from data.masks import make_mask_generator

    try:
        make_mask_generator(spec, resolution)
    except UserError as err:
        raise UserError(f"--masks {spec}: not an existing file or folder, nor a valid mask spec ({err})") from None


def run_generate(G, opts, device):
    """Inpaint every image of opts.images with the masks of opts.masks (folder, file or spec) for opts.seeds.

    opts: EasyDict(images, masks, seeds, outdir, truncation_psi, noise_mode, dropout, mask_hole, mask_seed, grid,
    batch_size, fit, face_index, fit_fallback); the fit options default to auto / none / none. Per-file problems
    are collected, not raised; returns EasyDict(written=[paths], failures=[(image_path, message)], num_images,
    notes=[messages of fallbacks that ran]).
    """
    check_output_path(opts.outdir, "--outdir")
    mask_is_spec = not os.path.exists(opts.masks)
    if mask_is_spec:
        check_mask_spec(opts.masks, G.img_resolution)
    same_folder = os.path.isdir(opts.masks) and os.path.abspath(opts.masks) == os.path.abspath(opts.images)
    images = list_images(opts.images, exclude_masks=same_folder)
    os.makedirs(opts.outdir, exist_ok=True)
    summary = EasyDict(written=[], failures=[], num_images=len(images), notes=[])
    if not G.synthesis.style_mod and len(opts.seeds) > 1 and opts.noise_mode != "random" and not opts.dropout:
        # z reaches nothing in this ablation; only random noise or dropout can make the seeds differ.
        summary.notes.append("this generator has no style modulation (trained with --no-style-mod): every seed "
                             "gives the same completion unless --noise-mode random or --dropout")
    fit_opts = dict(fit=opts.get("fit", "auto"), face_index=opts.get("face_index"),
                    fit_fallback=opts.get("fit_fallback", "none"))
    seen = {}
    for image_path in tqdm.tqdm(images, desc="inpainting", unit="img", disable=len(images) < 2):
        try:
            if _stem(image_path) in seen:  # face.png and face.jpg would write the same output files
                raise InpaintError(f"{image_path}: same name as {seen[_stem(image_path)]}; outputs would collide")
            seen[_stem(image_path)] = image_path
            img, mask = load_pair(image_path, opts.masks, mask_is_spec=mask_is_spec, mask_hole=opts.mask_hole,
                                  mask_seed=opts.mask_seed)
            results, report = inpaint_photo(G, img, mask, opts.seeds, device=device,
                                            truncation_psi=opts.truncation_psi, noise_mode=opts.noise_mode,
                                            dropout=opts.dropout, batch_size=opts.batch_size, name=image_path,
                                            **fit_opts)
        except (InpaintError, FitError) as err:
            message = str(err) if image_path in str(err) else f"{image_path}: {err}"
            summary.failures.append((image_path, message))
            continue
        if report.note:
            summary.notes.append(report.note)
        summary.written.extend(_write_results(opts, image_path, img, mask, results, mask_is_spec, report))
    return summary
