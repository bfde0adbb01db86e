"""Registry of named metrics (`fid<N>`, `ids<N>`, `pix<N>`, `<kind>_full`) and the entry points that run one
(`calc_metric`) and record its result (`report_metric`)."""

import json
import os
import re
import time

import torch

from dnnlib import EasyDict, UserError
from metrics.distributed import ddp_active
from metrics.eval_set import check_mask_spec, open_eval_dataset, prepare_inpainter
from torch_utils.misc import resolve_device

_metric_kinds = {}  # kind name -> fn(opts) -> dict of values; opts.num_items is None for `<kind>_full`
_NAME_RE = re.compile(r"^([a-z]+)(?:(\d+)(?:k(\d*))?|_full)$")
EXAMPLE_COUNTS = ("2k", "10k", "36k5", "_full")


def register_metric(fn):
    """Register `fn(opts) -> dict` under its function name as a metric kind (`fid` serves fid2k, fid_full...)."""
    _metric_kinds[fn.__name__] = fn
    return fn


def parse_metric(name):
    """'fid10k' -> ('fid', 10000); 'ids36k5' -> ('ids', 36500); 'pix2993' -> ('pix', 2993); 'fid_full' -> ('fid', None).

    Raises UserError for an unknown kind or a malformed count.
    """
    match = _NAME_RE.match(str(name))
    if match is None or match.group(1) not in _metric_kinds:
        raise UserError(f"--metrics: unknown metric '{name}' (valid: <kind><N> or <kind>_full with kind in "
                        f"{', '.join(sorted(_metric_kinds))}, e.g. {', '.join(list_valid_metrics()[:4])})")
    kind, digits, frac = match.groups()
    if digits is None:
        return kind, None
    count = int(digits)
    if name[len(kind) + len(digits):].startswith("k"):
        count = count * 1000 + (round(float("0." + frac) * 1000) if frac else 0)
    if count <= 0:
        raise UserError(f"--metrics: metric '{name}' asks for {count} images; need at least 1")
    return kind, count


def is_valid_metric(name):
    try:
        parse_metric(name)
    except UserError:
        return False
    return True


def list_valid_metrics():
    """Canonical names (any count N works too: fid5k, pix2993, ...)."""
    return [f"{kind}{count}" for kind in sorted(_metric_kinds) for count in EXAMPLE_COUNTS]


# ---------------------------------------------------------------------------------------------------------------------
# Metric kinds.

@register_metric
def fid(opts):
    from metrics.frechet_inception_distance import compute_fid

    return compute_fid(opts, opts.G, opts.dataset, opts.num_items)


@register_metric
def ids(opts):
    from metrics.inception_discriminative_score import compute_ids

    return compute_ids(opts, opts.G, opts.dataset, opts.num_items)


@register_metric
def pix(opts):
    from metrics.pixel_metrics import compute_pixel_metrics

    return compute_pixel_metrics(opts, opts.G, opts.dataset, opts.num_items)


# ---------------------------------------------------------------------------------------------------------------------
# Running and reporting.

def calc_metric(metric, *, G, data_path, mask_spec, device, seed=0, rank=0, num_gpus=1, detector=None,
                batch_size=16, cache_dir=None, G_kwargs=None, progress=False,
                num_workers=None):
    """Run metric `metric` of inpainter `G` on the validation set `data_path` with masks `mask_spec`.

    G: a Generator (called as G(img, mask, z, **G_kwargs)) or any callable fn(img, mask, z) -> img (z is None if it
    has no positive `z_dim`). Item i uses image i % len(dataset), mask eval_mask(mask_spec, res, seed, i) and z drawn
    from (seed, i); noise/dropout inside G draw from a per-batch seeded RNG: same arguments, same numbers.
    Under DDP (torch.distributed initialised, num_gpus > 1) every rank must call this; rank 0 gets the values,
    the other ranks get NaN/empty values. detector: local path or URL of the TorchScript Inception (None: the
    $COMODGAN_DETECTOR variable, then the public URL); `pix` metrics never load it. cache_dir: download and
    real-statistics cache (None: ~/.cache/comodgan or $COMODGAN_CACHE_DIR). progress: rank 0 prints progress lines
    to stderr. num_workers: DataLoader processes decoding images and drawing masks (None: 3 on CUDA, 0 on CPU).
    Returns EasyDict(results=EasyDict(<metric>[_<field>]=value, ...), metric, mask, seed, num_items, num_gpus,
    total_time, total_time_str).
    """
    kind, num_items = parse_metric(metric)
    if not 0 <= rank < num_gpus:
        raise ValueError(f"calc_metric: rank {rank} outside [0, {num_gpus})")
    start = time.time()
    device = resolve_device(device)
    resolution = getattr(G, "img_resolution", None)
    dataset = open_eval_dataset(data_path, resolution)
    resolution = dataset.resolution
    check_mask_spec(mask_spec, resolution, seed)
    num_items = len(dataset) if num_items is None else num_items
    opts = EasyDict(G=prepare_inpainter(G), G_kwargs=dict(G_kwargs or {}), dataset=dataset,
                    mask_spec=mask_spec, resolution=resolution, device=device, seed=int(seed), rank=rank,
                    num_gpus=num_gpus, detector=detector, batch_size=int(batch_size), cache_dir=cache_dir,
                    num_items=num_items, progress=progress,
                    num_workers=(3 if device.type == "cuda" else 0) if num_workers is None else int(num_workers))
    values = _metric_kinds[kind](opts)
    if ddp_active(opts):
        torch.distributed.barrier()  # nobody races ahead into the next metric while rank 0 fits the SVM
    results = EasyDict({(metric if key == kind else f"{metric}_{key}"): value for key, value in values.items()})
    total_time = time.time() - start
    return EasyDict(results=results, metric=metric, mask=mask_spec, seed=int(seed), num_items=num_items,
                    num_gpus=num_gpus, total_time=total_time, total_time_str=f"{total_time:.1f}s")


def report_metric(result, run_dir=None, snapshot_path=None):
    """Append `result` (plus snapshot name and timestamp) as one JSON line to `run_dir/metric-<name>.jsonl`;
    returns the line. Call on rank 0 only."""
    record = dict(result, snapshot_pkl=os.path.basename(snapshot_path) if snapshot_path else None,
                  timestamp=time.time())
    line = json.dumps(record, allow_nan=True)
    if run_dir is not None:
        with open(os.path.join(run_dir, f"metric-{result['metric']}.jsonl"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    return line
