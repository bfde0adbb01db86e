"""Command line: convert an official CoModGAN TensorFlow pickle, or the PyTorch port's converted generator, into
one of our weights-only snapshots.

    python legacy.py --source co-mod-gan-ffhq-9-025000.pkl --dest ffhq512.pt
    python legacy.py --source co-mod-gan-ffhq-9-025000_net_G_ema.pth --dest ffhq512.pt

The suffix of --source picks the reader. A `.pkl` is read with a restricted unpickler (converters/tf_pickle.py):
no code from the file is executed and TensorFlow is not needed; the snapshot holds G (from the pickle's G),
G_ema (from Gs) and D. A `.pth` (github.com/zengxianyu/co-mod-gan-pytorch, converters/port_pth.py) is read with
torch.load(weights_only=True); it holds only G_ema, so the snapshot has no G and no D and training cannot
resume from it.
"""

import os
import sys

import click

from dnnlib import UserError, check_output_path


@click.command()
@click.option("--source", required=True, metavar="PKL|PTH",
              help="Official TensorFlow network pickle (G, D, Gs), or the PyTorch port's *_net_G_ema.pth.")
@click.option("--dest", required=True, metavar="PT", help="Output snapshot (.pt), written atomically.")
@click.option("--fp16", is_flag=True, default=False,
              help="Run the 4 highest resolutions in float16 on CUDA (clamp 256); default: float32 like the original.")
@click.option("--force", is_flag=True, default=False, help="Overwrite --dest if it exists.")
def main(source, dest, fp16, force):
    """Convert an official CoModGAN pickle (co-mod-gan-ffhq-9-025000.pkl) or a port .pth to a .pt snapshot."""
    from training.checkpoint import save_snapshot

    try:
        if os.path.exists(dest) and not force:
            raise UserError(f"--dest {dest}: file exists (pass --force to overwrite)")
        if os.path.abspath(source) == os.path.abspath(dest):
            raise UserError(f"--dest {dest}: must differ from --source")
        check_output_path(dest, "--dest", "file")  # before a conversion that can take a while
        _refuse_our_snapshot(source)
        port = source.lower().endswith(".pth")
        snapshot = _convert(source, fp16, port)
        try:
            save_snapshot(dest, snapshot)
        except OSError as err:
            raise UserError(f"--dest {dest}: cannot write ({err.strerror or err})") from None
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    res = snapshot["G_kwargs"]["img_resolution"]
    if port:
        click.echo(f"{source}: {res}x{res} generator (G_ema only; G and D are absent, so training cannot resume "
                   f"from it) written to {dest}")
    else:
        click.echo(f"{source}: {res}x{res} generator (G, G_ema) and discriminator written to {dest}")


def _refuse_our_snapshot(source):
    """A .pt that loads as our snapshot needs no conversion; anything else is tried as a TF pickle below."""
    from training.checkpoint import CheckpointError, load_snapshot

    if not source.lower().endswith(".pt"):
        return
    try:
        load_snapshot(source)
    except CheckpointError:
        return
    raise UserError(f"--source {source}: already a comodgan-pytorch snapshot; generate.py, calc_metrics.py and "
                    f"train.py --resume read it as it is")


def _convert(source, fp16, port):
    if port:
        from converters.port_pth import convert_port_pth
        return convert_port_pth(source, fp16=fp16)
    from converters.tf_pickle import convert_tf_pickle
    return convert_tf_pickle(source, fp16=fp16)


if __name__ == "__main__":
    main()
