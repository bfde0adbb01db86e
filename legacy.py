"""Command line: convert an official CoModGAN TensorFlow pickle into one of our weights-only snapshots.

    python legacy.py --source co-mod-gan-ffhq-9-025000.pkl --dest ffhq512.pt

The pickle is read with a restricted unpickler (converters/tf_pickle.py): no code from the file is executed and
TensorFlow is not needed. The snapshot holds G (from the pickle's G), G_ema (from Gs) and D.
"""

import os
import sys

import click

from dnnlib import UserError


@click.command()
@click.option("--source", required=True, metavar="PKL", help="Official TensorFlow network pickle (G, D, Gs).")
@click.option("--dest", required=True, metavar="PT", help="Output snapshot (.pt), written atomically.")
@click.option("--fp16", is_flag=True, default=False,
              help="Run the 4 highest resolutions in float16 on CUDA (clamp 256); default: float32 like the original.")
@click.option("--force", is_flag=True, default=False, help="Overwrite --dest if it exists.")
def main(source, dest, fp16, force):
    """Convert an official CoModGAN TensorFlow pickle (e.g. co-mod-gan-ffhq-9-025000.pkl) to a .pt snapshot."""
    from converters.tf_pickle import convert_tf_pickle
    from training.checkpoint import save_snapshot

    try:
        if os.path.exists(dest) and not force:
            raise UserError(f"--dest {dest}: file exists (pass --force to overwrite)")
        if os.path.abspath(source) == os.path.abspath(dest):
            raise UserError(f"--dest {dest}: must differ from --source")
        snapshot = convert_tf_pickle(source, fp16=fp16)
        try:
            save_snapshot(dest, snapshot)
        except OSError as err:
            raise UserError(f"--dest {dest}: cannot write ({err.strerror or err})") from None
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    res = snapshot["G_kwargs"]["img_resolution"]
    click.echo(f"{source}: {res}x{res} generator (G, G_ema) and discriminator written to {dest}")


if __name__ == "__main__":
    main()
