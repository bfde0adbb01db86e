"""Command line: draw the evaluation masks of a mask spec, print their hole-ratio histogram per bucket and write a
preview grid; --save-masks also writes them as a fixed mask set (the work is in data/masks.py).

    python mask_tool.py --spec free-form --resolution 256 --out DIR
    python mask_tool.py --spec free-form-large --resolution 512 --count 2000 --out DIR --save-masks

Mask i is eval_mask(spec, resolution, seed, i), so `nvidia:DIR/masks` reads a saved set back in the same order.
"""

import os
import sys

import click
import numpy as np

from data.masks import HOLE_BUCKETS, SPEC_FORMS, bucket_histogram, write_eval_masks
from dnnlib import UserError


@click.command()
@click.option("--spec", required=True, help=f"Mask spec: {SPEC_FORMS}.")
@click.option("--resolution", type=click.IntRange(min=4), required=True, help="Mask side in pixels.")
@click.option("--count", type=click.IntRange(min=1), default=1000, show_default=True, help="Number of masks.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Evaluation-set seed.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder (created).")
@click.option("--save-masks", is_flag=True, help="Also write every mask as OUT/masks/NNNNNN.png (white = hole).")
@click.option("--preview", type=click.IntRange(min=1), default=64, show_default=True, help="Masks in the preview.")
def main(spec, resolution, count, seed, out, save_masks, preview):
    """Draw evaluation masks for SPEC, print their hole-ratio histogram per bucket and write a preview grid."""
    try:
        ratios = write_eval_masks(spec, resolution, count, seed, out, save_masks, preview)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    print(f"{count} masks, spec {spec!r}, resolution {resolution}, seed {seed}: "
          f"mean hole ratio {np.mean(ratios):.4f} (min {np.min(ratios):.4f}, max {np.max(ratios):.4f})")
    for scheme in HOLE_BUCKETS:
        print(f"{scheme} buckets:")
        for label, n in bucket_histogram(ratios, scheme).items():
            print(f"  {label:>8}: {n:6d} ({100.0 * n / count:5.1f}%)")
    print(f"preview: {os.path.join(out, 'preview.png')}")
    if save_masks:
        print(f"masks: {os.path.join(out, 'masks')} (white = hole)")


if __name__ == "__main__":
    main()
