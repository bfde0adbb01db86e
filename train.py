"""Command line for training CoModGAN: parses options and hands them, with the metric registry, to
training.training_loop.launch."""

import sys

import click

from dnnlib import UserError
from dnnlib.cli_types import FiniteFloatRange
from inference.loading import read_network_file
from metrics import metric_main
from training.config import preset_names
from training.training_loop import TrainingDiverged, launch


def _grid(ctx, param, value):
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
        if w < 1 or h < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected COLSxROWS such as 8x4") from None
    return (w, h)


@click.command(context_settings={"show_default": True})
@click.option("--outdir", required=True, metavar="DIR", help="Where run directories NNNNN-<desc>/ are created.")
@click.option("--data", required=True, metavar="ZIP|DIR", help="Training images (stylegan2-ada zip or folder).")
@click.option("--data-val", metavar="ZIP|DIR", help="Images for the metrics (default: --data).")
@click.option("--mask", default="free-form", metavar="SPEC",
              help="Training mask spec: center, center:0.4, free-form, free-form:0.2-0.4, nvidia:PATH, mixed:...")
@click.option("--cfg", type=click.Choice(preset_names()), default="auto",
              help="Preset: published CoModGAN hyperparameters (celebahq256/512, auto = dataset resolution) or "
                   "tiny (32x32, narrow, for CPU).")
@click.option("--batch", type=click.IntRange(min=1), help="Total batch over all processes [default: preset].")
@click.option("--batch-gpu", type=click.IntRange(min=1),
              help="Samples per device per round; gradients are accumulated over rounds [default: preset cap].")
@click.option("--gamma", type=FiniteFloatRange(min=0), help="R1 weight [default: preset, 10].")
@click.option("--ema-kimg", type=FiniteFloatRange(min=0), help="G EMA half-life in kimg [default: preset, 10].")
@click.option("--ema-rampup", type=FiniteFloatRange(min=0),
              help="EMA half-life at most RATIO x images seen early on; 0 = constant [default: preset: 0 = "
                   "official, tiny 0.05; 0 with --init].")
@click.option("--trunc", "truncation_psi", type=FiniteFloatRange(0, 1),
              help="Truncation psi of every training forward and the snapshot grids, toward the tracked w "
                   "average; 1 = none [default: 0.5, the official G_main's]. Metrics never truncate.")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), help="Adam lr of G and D [default: 0.002].")
@click.option("--kimg", type=FiniteFloatRange(min=0, min_open=True), help="Train for this many thousand images.")
@click.option("--mirror/--no-mirror", default=None, help="Random horizontal flips [default: on].")
@click.option("--snap", type=click.IntRange(min=1), help="Ticks between snapshots, grids and metrics.")
@click.option("--tick-kimg", type=FiniteFloatRange(min=0, min_open=True), help="kimg per progress tick.")
@click.option("--metrics", default="none", metavar="LIST", help="Comma-separated metrics per snapshot, or none.")
@click.option("--resume", metavar="PATH|latest|auto",
              help="Snapshot to resume from; 'latest' = newest in --outdir (error if none); 'auto' = latest if any.")
@click.option("--init", metavar="PATH",
              help="Start a NEW run from a network file: our snapshot (.pt), an official TF pickle (.pkl: G, D, "
                   "G_ema) or the PyTorch port's .pth (G only: D starts from scratch). kimg 0, fresh optimizers, "
                   "a new run directory; the networks must match --cfg and the data resolution. The EMA ramp-up "
                   "is off (constant half-life from the first step, as fine-tuning does) unless --ema-rampup is "
                   "given. Not with --resume; such a run resumes with --resume like any other.")
@click.option("--freeze-d", type=click.IntRange(min=0), default=0,
              help="Freeze-D: D's first N layers from the input side get no gradient and no optimizer updates. "
                   "Layers count as stylegan2-ada-pytorch's --freezed: fromrgb, conv0, conv1, skip of the "
                   "highest-resolution block, then conv0, conv1, skip of each lower block (10 at 32x32, 22 at "
                   "512x512); the 4x4 epilogue always trains.")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed of weights, data order, masks and noise.")
@click.option("--fp32", is_flag=True, help="Disable float16 layers on CUDA.")
@click.option("--workers", type=click.IntRange(min=0), default=2, help="DataLoader worker processes.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", help="Compute device.")
@click.option("--pl-weight", type=FiniteFloatRange(min=0), help="Path length regularisation weight [default: 0].")
@click.option("--l1-weight", type=FiniteFloatRange(min=0), help="L1 reconstruction weight [default: 0].")
@click.option("--style-mod/--no-style-mod", default=None,
              help="Modulate every layer by w; --no-style-mod = the paper's ablation (official "
                   "--disable-style-mod) [default: on].")
@click.option("--cond-mod/--no-cond-mod", default=None,
              help="Modulate every layer by the global code; --no-cond-mod = the paper's ablation (official "
                   "--disable-cond-mod) [default: on]. At least one stays on.")
@click.option("--grid", callback=_grid, metavar="COLSxROWS", help="Image grid layout [default: 8x4].")
@click.option("--aug", type=click.Choice(["noaug", "ada", "fixed"]), default="noaug",
              help="Augment everything D sees (image and mask together, stylegan2-ada's bgc ops): ada tunes the "
                   "strength p to D's overfitting, fixed keeps --aug-p. Turn ada on for a few thousand images or "
                   "fewer, or when D overfits (signs_real in stats.jsonl stays near +1); the published training "
                   "has none. See docs/own-data.md.")
@click.option("--aug-p", type=FiniteFloatRange(0, 1), help="Augmentation probability p: fixed (--aug fixed) or the "
                                                            "starting value (--aug ada) [default: 0].")
@click.option("--ada-target", type=FiniteFloatRange(0, 1),
              help="ADA's target for the mean sign of D(real): above it p rises, below it p falls [default: 0.6].")
@click.option("--ada-kimg", type=FiniteFloatRange(min=0, min_open=True),
              help="ADA speed: kimg for p to move by 1 [default: 500; 100 when starting from weights].")
@click.option("--dry-run", is_flag=True, help="Validate, print the resolved configuration and exit.")
def main(dry_run, **opts):
    """Train CoModGAN. One GPU: python train.py --outdir runs --data celebahq.zip --mask center.
    N GPUs: torchrun --nproc_per_node N train.py ... . CPU: add --cfg tiny."""
    try:
        launch(opts, dry_run=dry_run, metric_registry=metric_main, network_reader=read_network_file)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as err:
        print(f"error: training stopped: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
