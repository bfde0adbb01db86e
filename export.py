"""Command line: export a generator to one ONNX file for ONNX Runtime, OpenVINO or any other runtime (the work is
in inference/onnx_export.py; the file's inputs and metadata are defined in inference/onnx_format.py).

    python export.py --network runs/00000-tiny/network-snapshot-000010.pt --out G.onnx
    python export.py --network co-mod-gan-ffhq-9-025000.pkl --out ffhq512.onnx --batch 1 --noise none

The graph takes image [N, 3, R, R] in [-1, 1], mask [N, 1, R, R] (1 = known, 0 = hole), z [N, z_dim] and
truncation_psi [1], and returns the composite. Dropout is off and the noise is baked in. See docs/deployment.md.
"""

import os
import sys

import click

from dnnlib import UserError, check_output_path


@click.command()
@click.option("--network", required=True, metavar="SNAPSHOT|PKL|PTH",
              help="Snapshot .pt, official .pkl or the port's .pth; its G_ema is exported.")
@click.option("--out", required=True, metavar="ONNX", help="Output .onnx file (one file, weights included).")
@click.option("--batch", default="dynamic", show_default=True, metavar="N|dynamic",
              help="Batch size of the graph: a fixed N, or 'dynamic' (any batch at run time).")
@click.option("--opset", type=click.IntRange(18, 23), default=18, show_default=True,
              help="ONNX opset (the dynamo exporter writes 18 and above).")
@click.option("--noise", "noise_mode", type=click.Choice(["const", "none"]), default="const", show_default=True,
              help="Per-layer noise baked into the graph: the network's constant noise or none (random noise "
                   "is not exported).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run the file with ONNX Runtime once and compare it with the PyTorch reference.")
@click.option("--force", is_flag=True, default=False, help="Overwrite --out if it exists.")
def main(network, out, batch, opset, noise_mode, check, force):
    """Export the generator of a network file to ONNX (composite output, mask 1 = known, images in [-1, 1])."""
    from dnnlib.provenance import file_sha256
    from inference.loading import load_generator
    from inference.onnx_export import TOLERANCE, compare_with_reference, export_generator, parse_batch

    try:
        batch = parse_batch(batch)
        if not out.lower().endswith(".onnx"):
            raise UserError(f"--out {out}: name it *.onnx")
        if os.path.exists(out) and not force:
            raise UserError(f"--out {out}: file exists (pass --force to overwrite)")
        check_output_path(out, "--out", "file")
        G = load_generator(network, "cpu", impl="ref")
        meta = export_generator(G, out, batch=batch, opset=opset, noise_mode=noise_mode,
                                source=os.path.basename(network), source_sha256=file_sha256(network))
        click.echo(f"wrote {out}: {meta['resolution']}x{meta['resolution']}, batch {meta['batch']}, opset {opset}, "
                   f"noise {noise_mode}, truncation psi an input, dropout off ({os.path.getsize(out) / 2**20:.1f} MB)")
        if check:
            diff, scale = compare_with_reference(G, out)
            click.echo(f"check: ONNX Runtime vs the PyTorch reference, max |difference| {diff:.2e} "
                       f"at output scale {scale:.2f}")
            if diff > TOLERANCE * max(scale, 1.0):
                raise UserError(f"--out {out}: ONNX Runtime's output differs from the reference by {diff:.2e}, "
                                f"more than {TOLERANCE:g} of the output scale; the file is written but suspect")
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
