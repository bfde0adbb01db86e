"""Command line for diverse inpainting of your own images with a trained snapshot (the work is in inference/inpaint.py).

Examples:

    python generate.py --network runs/00000-tiny/network-snapshot-000010.pt --images faces/ --masks masks/ \\
        --seeds 0-7 --outdir out --grid
    python generate.py --network snap.pt --images face.jpg --masks center --seeds 0-3 --outdir out
    python generate.py --engine onnxruntime --network G.onnx --images face.jpg --masks center --outdir out
"""

import sys

import click

from cli_options import fit_options, impl_option
from dnnlib import EasyDict, UserError
from dnnlib.cli_types import FiniteFloatRange


def _seeds(ctx, param, value):
    from inference.inpaint import parse_seeds

    try:
        return parse_seeds(value)
    except UserError as err:
        raise click.BadParameter(str(err)) from None


@click.command()
@click.option("--network", "network", required=True, metavar="SNAPSHOT",
              help="Snapshot .pt, official .pkl or the port's .pth (converted in memory); with --engine "
                   "onnxruntime a .onnx file written by export.py.")
@click.option("--images", required=True, metavar="PATH", help="An image file or a folder of images (any size).")
@click.option("--masks", required=True, metavar="PATH|SPEC",
              help="A mask file, a folder of masks matched by stem (face.png <-> face.png or face_mask.png), "
                   "or a mask spec (center, free-form, free-form-large, ...) drawn reproducibly per image.")
@click.option("--seeds", type=str, default="0-7", show_default=True, callback=_seeds,
              help="Seeds, one result per seed: '0-7', '1,5,9', '0-3,10'.")
@click.option("--outdir", required=True, metavar="DIR", help="Where <stem>-seed<NNNN>.png (and grids) are written.")
@click.option("--trunc", "truncation_psi", type=FiniteFloatRange(0, 2), default=1.0, show_default=True,
              help="Truncation psi (1 = none; lower trades diversity for typicality).")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Per-layer noise: 'const' is reproducible and batched; 'random' is seeded per seed.")
@click.option("--dropout/--no-dropout", default=False, show_default=True,
              help="Keep the global code's dropout on, as the official CoModGAN inference does (more diversity; "
                   "each seed then runs alone).")
@click.option("--mask-hole", type=click.Choice(["white", "black"]), default="white", show_default=True,
              help="Which colour marks the hole in mask files.")
@click.option("--mask-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the masks drawn from a mask spec.")
@click.option("--grid/--no-grid", default=False, show_default=True,
              help="Also write <stem>-grid.png: the input with its hole, then each seed.")
@click.option("--resolution", type=click.IntRange(min=4), default=None,
              help="Expected model resolution; a snapshot of another resolution is an error.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Seeds per forward pass.")
@click.option("--engine", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True,
              help="torch runs a network file (--impl, --device apply); onnxruntime runs an exported .onnx file on "
                   "the CPU (see export.py).")
@fit_options
@impl_option
def main(network, resolution, device, impl, engine, **kwargs):
    """Fill the holes of each image once per seed, writing results at the image's original size."""
    from inference.onnx_runner import check_engine_file
    from inference.user_files import run_generate
    from torch_utils.misc import resolve_device

    try:
        check_engine_file(network, engine)
        dev = resolve_device("cpu" if engine == "onnxruntime" and device == "auto" else device)
        if engine == "onnxruntime":
            G = _onnx_generator(network, dev, resolution, kwargs)
        else:
            from inference.loading import load_generator

            G = load_generator(network, dev).set_impl(impl)
        if resolution is not None and G.img_resolution != resolution:
            raise UserError(f"--network {network}: the snapshot is {G.img_resolution}x{G.img_resolution}, "
                            f"not the --resolution {resolution} asked for")
        summary = run_generate(G, EasyDict(kwargs), dev)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    done = summary.num_images - len(summary.failures)
    click.echo(f"{done} of {summary.num_images} images inpainted; {len(summary.written)} files in {kwargs['outdir']}")
    if summary.failures:
        click.echo(f"{len(summary.failures)} image(s) failed:", err=True)
        for _path, message in summary.failures:
            click.echo(f"  {message}", err=True)
        sys.exit(1)


def _onnx_generator(network, device, resolution, opts):
    """The exported file behind ONNX Runtime, its options checked before any image is read."""
    from inference.onnx_runner import load_onnx_generator

    if device.type != "cpu":
        raise UserError(f"--device {device}: --engine onnxruntime runs on the CPU (use --device cpu or auto)")
    G = load_onnx_generator(network, resolution=resolution)
    G.check_options(opts["truncation_psi"], opts["noise_mode"], opts["dropout"])
    return G


if __name__ == "__main__":
    main()
