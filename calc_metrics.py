"""Command line: evaluate generator snapshots and traditional baselines with FID, P-IDS/U-IDS and pixel metrics on a
validation set, for one or more mask specs.

One method, no --outdir: prints a table and writes JSON (--out), as before:

    python calc_metrics.py --network run/network-snapshot-001000.pt --data val.zip \\
        --mask center,free-form-small,free-form-large --metrics fid10k,ids10k,pix2k --out results.json
    python calc_metrics.py --baseline telea --data val.zip --mask free-form --metrics pix2k

Several methods (or --outdir): the comparison run (metrics/comparison.py), writing results.json, results.md,
results.csv, holes.png and sheet.png into --outdir:

    python calc_metrics.py --network ours=run/network-snapshot-025000.pt --baseline telea,ns,patchmatch \\
        --data val.zip --mask center,free-form-small,free-form-large --metrics fid_full,ids_full,pix_full \\
        --outdir results/comparison

Another method's completions (docs/thesis-table.md): export the items, run its code on them, score its outputs
beside ours with the same --data, --mask, --seed and --metrics:

    python calc_metrics.py --export-protocol protocol/ --data val.zip --mask free-form --metrics pix_full
    python calc_metrics.py --network ours=snap.pt --baseline telea --results lama=lama-out/ --protocol protocol/ \\
        --data val.zip --mask free-form --metrics pix_full --outdir results/comparison
"""

import json
import math
import os
import shutil
import sys
import tempfile
import uuid

import click
import torch

from cli_options import impl_option
from dnnlib import EasyDict, UserError, check_output_path
from metrics import metric_main
from metrics.baselines import BASELINE_METHODS, DEFAULT_BASELINES, check_baseline_name


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


def split_baselines(values):
    """--baseline values, comma-separated or repeated -> names ('default' stands for DEFAULT_BASELINES); an unknown
    name is a UserError listing the valid ones."""
    names = [t.strip() for value in values for t in str(value).split(",") if t.strip()]
    names = [n for name in names for n in (DEFAULT_BASELINES if name == "default" else [name])]
    for name in names:
        check_baseline_name(name)
    return list(dict.fromkeys(names))  # a repeated name is one method


def is_comparison(cfg):
    return cfg.outdir is not None or bool(cfg.results) or len(cfg.networks) + len(cfg.baselines) > 1


def check_inputs(cfg):
    """Fail before any process starts or any weight loads."""
    if not cfg.networks and not cfg.baselines and not cfg.results:
        raise UserError(f"give at least one --network SNAPSHOT, --baseline NAME ({', '.join(BASELINE_METHODS)}) or "
                        "--results NAME=DIR")
    if is_comparison(cfg) and cfg.outdir is None:
        what = "--results rows are" if cfg.results else "several methods make"
        raise UserError(f"{what} a comparison: give --outdir DIR for its files (results.md, ...)")
    if cfg.protocol is not None and not cfg.results:
        raise UserError("--protocol names the export folder of --results completions; give --results NAME=DIR too")
    from metrics.comparison import split_network_arg
    from metrics.results_reader import split_results_arg

    for value in cfg.networks:
        path = split_network_arg(value)[1]
        if not os.path.isfile(path):
            raise UserError(f"--network {path}: no such file")
    for value in cfg.results:
        name, folder = split_results_arg(value)
        if not os.path.isdir(folder):
            raise UserError(f"--results {name}={folder}: no such folder")
    if cfg.protocol is not None and not os.path.isdir(cfg.protocol):
        raise UserError(f"--protocol {cfg.protocol}: no such folder")
    if not os.path.exists(cfg.data):
        raise UserError(f"--data {cfg.data}: no such file or folder")
    if cfg.num_gpus > 1 and cfg.device.startswith("cuda") and torch.cuda.device_count() < cfg.num_gpus:
        raise UserError(f"--num-gpus {cfg.num_gpus}: only {torch.cuda.device_count()} CUDA devices are visible")


def build_inpainter(cfg, device):
    if cfg.baseline is not None:
        from metrics.baselines import make_baseline

        return make_baseline(cfg.baseline)
    from inference.loading import load_generator
    from metrics.comparison import split_network_arg

    return load_generator(split_network_arg(cfg.network)[1], device, ema=True).set_impl(cfg.impl)


def _device_for_rank(cfg, rank):
    from torch_utils.misc import resolve_device

    device = resolve_device(cfg.device)
    if device.type == "cuda" and cfg.num_gpus > 1:
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    return device


def evaluate(cfg, rank=0):
    """One method: every (mask, metric) pair on this rank; rank 0 returns the list of result dicts, others None."""
    if is_comparison(cfg):
        return evaluate_comparison(cfg, rank)
    device = _device_for_rank(cfg, rank)
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


def evaluate_comparison(cfg, rank=0):
    """Every method x mask x metric (metrics/comparison.py); rank 0 returns the record, others None."""
    from metrics.comparison import build_methods, run_comparison

    device = _device_for_rank(cfg, rank)
    methods, dataset = build_methods(cfg.networks, cfg.baselines, data_path=cfg.data, device=device, impl=cfg.impl,
                                     dropout=cfg.dropout, results=cfg.results, protocol_dir=cfg.protocol)
    return run_comparison(methods, dataset, cfg.masks, cfg.metrics, device=device, seed=cfg.seed,
                          detector=cfg.detector, detector_explicit=cfg.detector is not None, batch_size=cfg.batch,
                          cache_dir=cfg.cache_dir, sheet_count=cfg.sheet, rank=rank, num_gpus=cfg.num_gpus,
                          data_path=cfg.data)


def export(cfg):
    """--export-protocol: every item of the run that --data/--mask/--seed/--metrics define, as PNGs + manifest."""
    from metrics.comparison import num_plan_items, plan_metrics
    from metrics.eval_set import check_mask_spec, open_eval_dataset
    from metrics.protocol_export import export_protocol

    if cfg.networks or cfg.baselines or cfg.results:
        raise UserError("--export-protocol writes the evaluation items only; score methods in a separate run with "
                        "the same --data, --mask, --seed and --metrics")
    if not os.path.exists(cfg.data):
        raise UserError(f"--data {cfg.data}: no such file or folder")
    dataset = open_eval_dataset(cfg.data)
    for spec in cfg.masks:
        check_mask_spec(spec, dataset.resolution, cfg.seed)
    num_items = num_plan_items(plan_metrics(cfg.metrics, len(dataset)))
    step = max(1, -(-len(cfg.masks) * num_items // 10))  # about every 10%

    def progress(done, total):
        if done % step == 0 or done == total:
            print(f"  exported {done}/{total} items", file=sys.stderr, flush=True)

    manifest = export_protocol(cfg.export_protocol, dataset, cfg.masks, cfg.seed, num_items, cfg.metrics, progress)
    print(f"wrote {len(cfg.masks)} protocol(s) x {num_items} items (image, mask with white = hole, masked input) "
          f"and manifest.json to {cfg.export_protocol}; protocol hash {manifest['protocol_hash']}")


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
    if is_comparison(cfg):
        from metrics.report_files import markdown_table, table_notes, write_results

        paths = write_results(cfg.outdir, results)
        if cfg.out:  # a copy of results.json where the single-method mode would write
            shutil.copyfile(paths["results.json"], cfg.out)
        print("\n".join(table_notes(results) + [""] + markdown_table(results)))
        print(f"wrote {', '.join(paths.values())}", file=sys.stderr)
        return
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
@click.option("--network", "networks", type=str, multiple=True,
              help="Generator to evaluate (snapshot .pt, official .pkl or the port's .pth); repeatable; LABEL=PATH "
                   "names its row.")
@click.option("--baseline", "baselines", type=str, multiple=True,
              help=f"Traditional method(s), comma-separated or repeated: {', '.join(BASELINE_METHODS)}, or "
                   f"'default' for {','.join(DEFAULT_BASELINES)}.")
@click.option("--results", "results", type=str, multiple=True,
              help="Another method's completions: NAME=DIR with DIR/<protocol folder>/<item>.png per exported item "
                   "(see --export-protocol) and the export's manifest.json; repeatable.")
@click.option("--protocol", type=str, default=None,
              help="--results: the --export-protocol folder, whose manifest.json is used when DIR holds none.")
@click.option("--export-protocol", type=str, default=None, metavar="DIR",
              help="Write every evaluation item (image, mask with white = hole, masked input) as PNGs plus "
                   "manifest.json into DIR, for other methods' code; takes --data, --mask, --seed, --metrics.")
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
@click.option("--out", type=str, default=None, help="One method: write all results to this JSON file.")
@click.option("--outdir", type=str, default=None,
              help="Comparison files (results.json/.md/.csv, holes.png, sheet.png) go here; needed with >1 method.")
@click.option("--sheet", type=click.IntRange(min=0), default=8, show_default=True,
              help="Comparison: validation images per protocol in sheet.png (0: no sheet).")
@click.option("--dropout/--no-dropout", default=True, show_default=True,
              help="Keep the global code's dropout on at inference, as the official CoModGAN evaluation does.")
@click.option("--device", type=str, default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Images per batch.")
@impl_option
@click.option("--cache-dir", type=str, default=None,
              help="Download / real-statistics cache (default $COMODGAN_CACHE_DIR or ~/.cache/comodgan).")
def main(**kwargs):
    """Evaluate inpainting snapshots, traditional baselines and other methods' stored completions with the published
    protocols (several methods: a comparison table, plot and sheet in --outdir), or export the evaluation items
    (--export-protocol) for other methods' code."""
    cfg = EasyDict(kwargs)
    try:
        cfg.masks = split_mask_specs(cfg.masks)
        cfg.metrics = split_metrics(cfg.metrics)
        cfg.baselines = split_baselines(cfg.baselines)
        cfg.networks = list(cfg.networks)
        cfg.results = list(cfg.results)
        if cfg.export_protocol is not None:
            check_output_path(cfg.export_protocol, "--export-protocol")
            export(cfg)
            return
        cfg.network = cfg.networks[0] if len(cfg.networks) == 1 else None  # the single-method mode's fields
        cfg.baseline = cfg.baselines[0] if len(cfg.baselines) == 1 else None
        if cfg.out:  # checked before evaluating, which can take hours
            check_output_path(cfg.out, "--out", "file")
        if cfg.outdir:
            check_output_path(cfg.outdir, "--outdir")
        run(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
