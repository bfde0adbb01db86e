"""Command line: evaluate a generator snapshot (or an OpenCV baseline) with FID, P-IDS/U-IDS and pixel metrics on
a validation set, for one or more mask specs; prints a table and writes JSON.

    python calc_metrics.py --network run/network-snapshot-001000.pt --data val.zip \\
        --mask center,free-form-small,free-form-large --metrics fid10k,ids10k,pix2k --out results.json
    python calc_metrics.py --baseline telea --data val.zip --mask free-form --metrics pix2k
"""

import json
import math
import os
import sys
import tempfile
import uuid

import click
import torch

from dnnlib import EasyDict, UserError
from inference.impls import impl_option
from metrics import metric_main
from metrics.baselines import BASELINE_METHODS


def split_mask_specs(values):
    """Split --mask values on commas, keeping `mixed:a=0.8,b=0.2` together (its `name=weight` parts)."""
    specs = []
    for value in values:
        for token in str(value).split(","):
            token = token.strip()
            if not token:
                continue
            if "=" in token and specs and specs[-1].startswith("mixed:") and not token.startswith("mixed:"):
                specs[-1] += "," + token
            else:
                specs.append(token)
    if not specs:
        raise UserError("--mask: give at least one mask spec (e.g. center or free-form)")
    return specs


def split_metrics(value):
    metrics = [m.strip() for m in str(value).split(",") if m.strip()]
    if not metrics:
        raise UserError("--metrics: give at least one metric (e.g. fid10k,ids10k,pix2k)")
    for name in metrics:
        metric_main.parse_metric(name)  # raises a UserError listing the valid names
    return metrics


def check_inputs(cfg):
    """Fail before any process starts or any weight loads."""
    if (cfg.network is None) == (cfg.baseline is None):
        raise UserError("give exactly one of --network SNAPSHOT or --baseline telea|ns")
    if cfg.network is not None and not os.path.isfile(cfg.network):
        raise UserError(f"--network {cfg.network}: no such file")
    if not os.path.exists(cfg.data):
        raise UserError(f"--data {cfg.data}: no such file or folder")
    if cfg.num_gpus > 1 and cfg.device.startswith("cuda") and torch.cuda.device_count() < cfg.num_gpus:
        raise UserError(f"--num-gpus {cfg.num_gpus}: only {torch.cuda.device_count()} CUDA devices are visible")


def build_inpainter(cfg, device):
    if cfg.baseline is not None:
        from metrics.baselines import make_baseline

        return make_baseline(cfg.baseline)
    from inference.loading import load_generator

    return load_generator(cfg.network, device, ema=True).set_impl(cfg.impl)


def evaluate(cfg, rank=0):
    """Every (mask, metric) pair on this rank; rank 0 returns the list of result dicts, other ranks None."""
    from torch_utils.misc import resolve_device

    device = resolve_device(cfg.device)
    if device.type == "cuda" and cfg.num_gpus > 1:
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    G = build_inpainter(cfg, device)
    G_kwargs = dict(dropout=cfg.dropout) if cfg.network is not None else {}
    results = []
    for spec in cfg.masks:
        for metric in cfg.metrics:
            result = metric_main.calc_metric(metric, G=G, data_path=cfg.data, mask_spec=spec, device=device,
                                             seed=cfg.seed, rank=rank, num_gpus=cfg.num_gpus, detector=cfg.detector,
                                             batch_size=cfg.batch, cache_dir=cfg.cache_dir, G_kwargs=G_kwargs,
                                             progress=True)
            if rank == 0:
                print(f"{spec:<24s} {metric:<10s} done in {result.total_time_str}", file=sys.stderr)
                results.append(dict(result))
    return results if rank == 0 else None


def format_table(results):
    lines = [f"{'mask':<24s} {'metric':<10s} {'result':<34s} {'value':>10s}"]
    for res in results:
        for key, value in res["results"].items():
            shown = f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)
            lines.append(f"{res['mask']:<24s} {res['metric']:<10s} {key:<34s} {shown:>10s}")
    return "\n".join(lines)


def write_json(path, cfg, results):
    """Atomic: temp file in the same folder, fsync, rename."""
    record = dict(network=cfg.network, baseline=cfg.baseline, data=cfg.data, masks=cfg.masks, seed=cfg.seed,
                  detector=cfg.detector, num_gpus=cfg.num_gpus, dropout=cfg.dropout if cfg.network else None,
                  results=results)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def finish(cfg, results):
    print(format_table(results))
    if cfg.out:
        write_json(cfg.out, cfg, results)
        print(f"wrote {cfg.out}", file=sys.stderr)


def _worker(rank, cfg, init_file):
    """One spawned process of a --num-gpus run: join the group (nccl on CUDA, gloo on CPU) and evaluate."""
    backend = "nccl" if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()) \
        else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    torch.distributed.init_process_group(backend=backend, init_method=f"file://{init_file}", rank=rank,
                                         world_size=cfg.num_gpus)
    try:
        results = evaluate(cfg, rank)
        if rank == 0:
            finish(cfg, results)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        torch.distributed.destroy_process_group()


def run(cfg):
    check_inputs(cfg)
    if cfg.num_gpus == 1:
        finish(cfg, evaluate(cfg))
        return
    with tempfile.TemporaryDirectory() as tmp:
        try:
            torch.multiprocessing.spawn(_worker, args=(cfg, os.path.join(tmp, "dist_init")), nprocs=cfg.num_gpus)
        except torch.multiprocessing.ProcessExitedException as err:
            raise SystemExit(err.exit_code or 1) from None


@click.command()
@click.option("--network", "network", type=str, default=None,
              help="Generator to evaluate: snapshot .pt, official .pkl or the port's .pth.")
@click.option("--baseline", type=click.Choice(sorted(BASELINE_METHODS)), default=None,
              help="Evaluate OpenCV's traditional inpainting (Telea or Navier-Stokes) instead of a network.")
@click.option("--data", type=str, required=True, help="Validation images: a zip or a folder.")
@click.option("--mask", "masks", type=str, multiple=True, required=True,
              help="Mask spec(s), comma-separated or repeated: center, free-form-small, free-form:0.2-0.4, ...")
@click.option("--metrics", type=str, default="fid10k,ids10k,pix2k", show_default=True,
              help="Comma-separated metrics: fid<N>, ids<N>, pix<N> or <kind>_full (N like 2k, 10k, 36k5, 2993).")
@click.option("--num-gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes to evaluate with (one per GPU; gloo processes on CPU).")
@click.option("--detector", type=str, default=None,
              help="Inception TorchScript file or URL (default: $COMODGAN_DETECTOR, then the public URL).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the evaluation masks and latents.")
@click.option("--out", type=str, default=None, help="Write all results to this JSON file.")
@click.option("--dropout/--no-dropout", default=True, show_default=True,
              help="Keep the global code's dropout on at inference, as the official CoModGAN evaluation does.")
@click.option("--device", type=str, default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Images per batch.")
@impl_option
@click.option("--cache-dir", type=str, default=None,
              help="Download / real-statistics cache (default $COMODGAN_CACHE_DIR or ~/.cache/comodgan).")
def main(**kwargs):
    """Evaluate an inpainting snapshot or a traditional baseline with the published protocols."""
    cfg = EasyDict(kwargs)
    try:
        cfg.masks = split_mask_specs(cfg.masks)
        cfg.metrics = split_metrics(cfg.metrics)
        run(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
