"""Command line: print the per-layer summary (name, output shape, parameter count) and the totals of G and D at a
resolution and width (the work is in training/networks.py).

    python network_summary.py --resolution 512          # the official 512 networks: G 79,792,231, D 28,982,913
    python network_summary.py --resolution 512 --no-style-mod   # the paper's ablation: G 75,204,711
    python network_summary.py --resolution 32 --channel-base 2048 --channel-max 32
"""

import sys

import click

from dnnlib import UserError


@click.command()
@click.option("--resolution", type=int, default=512, show_default=True, help="Image resolution (32..1024).")
@click.option("--channel-base", type=click.IntRange(min=1), default=16384, show_default=True,
              help="nf(stage) = clip(channel_base / 2**stage, 1, channel_max).")
@click.option("--channel-max", type=click.IntRange(min=1), default=512, show_default=True,
              help="Maximum feature maps of any layer.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch of the forward.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--style-mod/--no-style-mod", default=True, show_default=True,
              help="Modulate by w (off: the paper's ablation, see docs/ablations.md).")
@click.option("--cond-mod/--no-cond-mod", default=True, show_default=True,
              help="Modulate by the global code (off: the paper's ablation).")
def main(resolution, channel_base, channel_max, batch, device, style_mod, cond_mod):
    """Print the per-layer summary (name, output shape, parameter count) and totals of G and D."""
    from torch_utils.misc import resolve_device
    from training.networks import print_network_summary

    try:
        print_network_summary(resolution, channel_base, channel_max, batch, resolve_device(device),
                              style_mod=style_mod, cond_mod=cond_mod)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
