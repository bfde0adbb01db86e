"""Criminisi's search window (metrics/criminisi.py): CPU time and error in the hole for each search radius, the
whole-image search of the paper included, on scikit-image's photos (astronaut, chelsea, coffee, rocket; nothing
downloads) with evaluation masks.

Usage: python benchmarks/criminisi_search.py [--resolution 256] [--radius 16 --radius 32 ...] [--masks 2]
Each radius fills every photo under `--masks` masks of each spec (items 0, 1, ... of the spec, seed 0). The table
gives the total CPU time and, over the hole pixels, the mean absolute error (0-255) and the PSNR against the photo.
Error against the original is a coarse measure for inpainting (a plausible fill that differs from the truth scores
badly); it shows whether a window loses anything against the paper's global search, not which fill looks best.
"""

import os
import sys
import time

import click
import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from data.masks import eval_mask  # noqa: E402
from metrics import criminisi  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def photos(resolution):
    """scikit-image's colour photos, resized with area averaging to `resolution` x `resolution`."""
    from skimage import data

    return [cv2.resize(getattr(data, name)(), (resolution, resolution), interpolation=cv2.INTER_AREA)
            for name in PHOTOS]


def score(radius, images, masks):
    """(CPU seconds, mean absolute error, PSNR) over the hole pixels of every (image, mask) pair."""
    errors, start = [], time.process_time()
    for image in images:
        for known in masks:
            out = criminisi.inpaint(image, known, search_radius=radius)
            errors.append((out.astype(np.float64) - image)[known == 0])
    cpu = time.process_time() - start
    diff = np.concatenate(errors)
    return cpu, float(np.abs(diff).mean()), float(10 * np.log10(255**2 / np.mean(diff**2)))


@click.command()
@click.option("--resolution", type=click.IntRange(min=32), default=256, show_default=True, help="Image side in pixels.")
@click.option("--radius", "radii", type=str, multiple=True, default=("16", "32", "64", "128", "whole"),
              show_default=True, help="Search radius in pixels, or 'whole' for the whole image (repeatable).")
@click.option("--mask", "specs", multiple=True, default=("center", "free-form-large"), show_default=True,
              help="Evaluation mask spec (repeatable).")
@click.option("--masks", "count", type=click.IntRange(min=1), default=2, show_default=True, help="Masks per spec.")
def main(resolution, radii, specs, count):
    """Print CPU time and hole error of Criminisi's fill for each search radius."""
    for radius in radii:
        if radius != "whole" and not radius.isdigit():
            raise click.BadParameter(f"{radius!r} is neither a number of pixels nor 'whole'", param_hint="--radius")
    images = photos(resolution)
    masks = [eval_mask(spec, resolution, 0, i) for spec in specs for i in range(count)]
    criminisi.inpaint(images[0], masks[0])  # warm-up: OpenCV's first calls are not the method's time
    print(f"{os.cpu_count()} CPUs, OpenCV {cv2.__version__}; {len(images)} photos x {len(masks)} masks "
          f"({', '.join(specs)}) at {resolution} px; default radius {criminisi.SEARCH_RADIUS}")
    print(f"{'radius':>7s} {'CPU s':>8s} {'hole L1':>8s} {'hole PSNR':>10s}")
    for radius in radii:
        cpu, l1, psnr = score(None if radius == "whole" else int(radius), images, masks)
        print(f"{radius:>7s} {cpu:>8.2f} {l1:>8.2f} {psnr:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
