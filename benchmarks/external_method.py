"""Another method's code on an exported protocol, standing in for LaMa's or MAT's own predict script: it reads only
the PNG files and manifest.json that `calc_metrics.py --export-protocol` wrote, and writes one completion PNG per
item, named as the items, for `calc_metrics.py --results NAME=OUT`. It imports nothing from this repository.

Usage: python benchmarks/external_method.py --protocol EXPORT_DIR --out OUT_DIR [--method telea|ns|biharmonic]

Methods: OpenCV's Telea and Navier-Stokes (radius 3, as metrics/baselines.py calls them, so `telea` here must score
exactly like `--baseline telea`), and scikit-image's biharmonic inpainting (not among the built-in baselines).
The manifest is copied into OUT_DIR, so that --results finds it there.
"""

import json
import os
import shutil

import click
import cv2
import numpy as np
import PIL.Image

RADIUS = 3  # Telea / Navier-Stokes neighbourhood radius in pixels


def _read(path, mode):
    with PIL.Image.open(path) as img:
        return np.asarray(img.convert(mode))


def complete(method, masked, holes):
    """Fill the holes (uint8 [H, W], 255 = hole) of an RGB uint8 image; returns uint8 [H, W, 3]."""
    if method == "telea":
        return cv2.inpaint(masked, holes, RADIUS, cv2.INPAINT_TELEA)
    if method == "ns":
        return cv2.inpaint(masked, holes, RADIUS, cv2.INPAINT_NS)
    from skimage.restoration import inpaint_biharmonic

    out = inpaint_biharmonic(masked.astype(np.float64) / 255.0, holes > 0, channel_axis=-1)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


@click.command()
@click.option("--protocol", "protocol_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder written by calc_metrics.py --export-protocol.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Where the completions go: OUT/<protocol folder>/<item>.png.")
@click.option("--method", type=click.Choice(["telea", "ns", "biharmonic"]), default="telea", show_default=True,
              help="The inpainting method to run on every item.")
def main(protocol_dir, out_dir, method):
    """Complete every exported item with an OpenCV or scikit-image method, from the PNG files alone."""
    with open(os.path.join(protocol_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    count = 0
    for proto in manifest["protocols"]:
        os.makedirs(os.path.join(out_dir, proto["folder"]), exist_ok=True)
        for item in proto["items"]:
            masked = _read(os.path.join(protocol_dir, proto["folder"], "masked", item["name"]), "RGB")
            holes = _read(os.path.join(protocol_dir, proto["folder"], "masks", item["name"]), "L")
            out = complete(method, np.ascontiguousarray(masked), np.ascontiguousarray(holes))
            PIL.Image.fromarray(out).save(os.path.join(out_dir, proto["folder"], item["name"]))
            count += 1
    shutil.copyfile(os.path.join(protocol_dir, "manifest.json"), os.path.join(out_dir, "manifest.json"))
    print(f"{method}: wrote {count} completions to {out_dir}")


if __name__ == "__main__":
    main()
