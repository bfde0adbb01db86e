"""The comparison run: several inpainters (networks, traditional baselines and other methods' stored completions)
x several mask protocols on the same validation images, masks and latents, every requested metric from one
inpainting pass per (method, protocol).

Item i of a protocol is validation image i % len(dataset) with mask eval_mask(spec, res, seed, i) and the latent
(or, for PatchMatch, the search seed) drawn from (seed, i): every method sees the same inputs, and a rerun gives
the same numbers. Every output, stored completions included, is composited with the known pixels before scoring.
Values are named as calc_metric names them (`pix2k_psnr`, `fid10k`, `ids10k_pids`, ...), so the figures equal
those of separate single-metric runs with the same batch size.
"""

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from dnnlib import EasyDict, UserError
from dnnlib.provenance import code_version, file_sha256
from metrics import detector_loader, metric_main, pixel_metrics
from metrics.distributed import gather_dicts, gather_rows, rank_indices
from metrics.eval_set import check_mask_spec, iterate_eval_pairs, open_eval_dataset, prepare_inpainter
from metrics.feature_stats import FeatureStats, compute_real_stats
from metrics.results_reader import split_label_arg

DETECTOR_KINDS = ("fid", "ids")  # metric kinds that need the Inception detector
HOLE_PLOT_SCHEME = "nvidia"  # holes.png x axis: NVIDIA's 10% buckets (0-60%) resolve small and large masks alike
COMPOSITE_NOTE = "every method's output is composited with the known pixels before scoring"


@dataclass
class Method:
    """One row of the comparison table."""

    key: str  # unique id in results.json
    label: str  # row name in the tables and column name in the sheet
    kind: str  # 'network', 'baseline' or 'results' (stored completions, --results)
    source: str  # snapshot path, baseline name or completions folder
    inpainter: object = field(repr=False)  # Generator, metrics.baselines.Baseline or results_reader.Completions
    G_kwargs: dict = field(default_factory=dict)  # extra arguments of a Generator call (dropout)
    info: dict = field(default_factory=dict)  # recorded with the method in results.json


@dataclass
class Outcome:
    """What the passes of a run produced, by method key and protocol spec (rank 0 only)."""

    figures: dict = field(default_factory=dict)  # {key: {spec: {value name: value}}}
    rows: dict = field(default_factory=dict)  # {key: {spec: per-item pixel rows}} for the hole-ratio plot
    hole_ratios: dict = field(default_factory=dict)  # {spec: mean hole ratio of its items}
    sheets: dict = field(default_factory=dict)  # {spec: {inputs: {item: (real, mask)}, fakes: {key: {item: fake}}}}


# ---------------------------------------------------------------------------------------------------------------------
# Building the methods: every check that can fail runs here or at the top of run_comparison, before the first image
# is inpainted.

def _unique_labels(labels):
    """Labels made unique by numbering repeats ('a', 'a (2)')."""
    seen, out = {}, []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def split_network_arg(value):
    """'LABEL=PATH' -> (LABEL, PATH); a plain PATH (or an existing file whose name holds '=') -> (None, PATH)."""
    return split_label_arg(value, os.path.isfile)


def build_methods(networks, baselines, *, data_path, device, impl="fast", dropout=True, results=(),
                  protocol_dir=None):
    """Methods for `networks` ([LABEL=]PATH each), `baselines` (names) and `results` (NAME=DIR each: stored
    completions, their manifest in DIR or in the export folder `protocol_dir`), in that order.

    Opens the validation set first: an empty set, a snapshot of another resolution than the data, an unknown
    baseline, a baseline whose library cannot load, or a results folder without a manifest is a UserError before
    any evaluation.
    """
    from inference.loading import load_generator
    from metrics.baselines import make_baseline
    from metrics.results_reader import Completions, split_results_arg

    dataset = open_eval_dataset(data_path)
    built = []  # (label, kind, source, inpainter, G_kwargs, key)
    for value in networks:
        label, path = split_network_arg(value)
        if not os.path.isfile(path):
            raise UserError(f"--network {path}: no such file")
        G = load_generator(path, device, ema=True).set_impl(impl)
        open_eval_dataset(data_path, G.img_resolution)  # the resolution check, naming both
        key = os.path.splitext(os.path.basename(path))[0]
        built.append((label or os.path.basename(path), "network", path, G, dict(dropout=dropout), key))
    for name in baselines:
        baseline = make_baseline(name)
        built.append((baseline.label, "baseline", name, baseline, {}, name))
    for value in results:
        name, folder = split_results_arg(value)
        built.append((name, "results", folder, Completions(name, folder, protocol_dir), {}, name))
    if not built:
        raise UserError("give at least one --network SNAPSHOT, --baseline NAME or --results NAME=DIR")
    labels = _unique_labels([b[0] for b in built])
    keys = _unique_labels([b[5] for b in built])
    methods = [Method(key=k.replace(" ", ""), label=lab, kind=kind, source=src, inpainter=inp, G_kwargs=kw)
               for k, lab, (_l, kind, src, inp, kw, _k) in zip(keys, labels, built)]
    return methods, dataset


# ---------------------------------------------------------------------------------------------------------------------
# The whole run.

def run_comparison(methods, dataset, protocols, metrics, *, device, seed=0, detector=None, detector_explicit=False,
                   batch_size=16, cache_dir=None, sheet_count=8, num_workers=None, progress=True, rank=0,
                   num_gpus=1, data_path=None):
    """Evaluate every method under every protocol (mask spec) with every metric of `metrics`.

    methods: from build_methods; dataset: the validation ImageDataset it returned; protocols: mask specs.
    Returns on rank 0 a JSON-able dict (see report_files.write_results for the files made of it) plus the sheet
    pictures under the key '_sheets'; None on the other ranks. Under DDP every rank must call this.
    """
    start = time.time()
    from torch_utils.misc import resolve_device

    device = resolve_device(device)
    for spec in protocols:
        check_mask_spec(spec, dataset.resolution, seed)  # a bad spec fails before any work
    plan = plan_metrics(metrics, len(dataset))
    check_stored_completions(methods, dataset, protocols, seed, plan)
    opts = EasyDict(dataset=dataset, data_path=data_path, resolution=dataset.resolution, device=device,
                    seed=int(seed), rank=rank, num_gpus=num_gpus, detector=detector, batch_size=int(batch_size),
                    cache_dir=cache_dir, progress=progress, G_kwargs={},
                    num_workers=(3 if device.type == "cuda" else 0) if num_workers is None else int(num_workers))
    module, det_info = prepare_detector(opts, plan, len(dataset), detector_explicit)
    real_stats = {}
    if module is not None:
        for name, (kind, count) in plan.items():
            if kind == "fid":
                real_stats[name] = compute_real_stats(opts, dataset, module, det_info.id, min(count, len(dataset)))
    if not det_info.available:
        plan = {name: (kind, count) for name, (kind, count) in plan.items() if kind not in DETECTOR_KINDS}
        if not plan:
            raise UserError(f"{det_info.note}; no metric left to compute (add a pix metric, e.g. pix2k)")
    for method in methods:
        method.inpainter = prepare_inpainter(method.inpainter)
    # The sheet shows items that every pass inpaints anyway: the first ones, fewer if the set or the counts are small.
    sheet_count = min(int(sheet_count), len(dataset), num_plan_items(plan))
    outcome = Outcome()
    for spec in protocols:
        outcome.sheets[spec] = dict(inputs=_sheet_inputs(opts, spec, sheet_count), fakes={})
        for method in methods:
            out = evaluate_pass(opts, method, spec, plan, module, real_stats, sheet_count)
            if rank != 0:
                continue
            outcome.figures.setdefault(method.key, {})[spec] = out.figures
            outcome.rows.setdefault(method.key, {})[spec] = out.rows
            outcome.hole_ratios[spec] = out.hole_ratio
            outcome.sheets[spec]["fakes"][method.key] = out.sheet
    if rank != 0:
        return None
    return _record(opts, methods, protocols, plan, det_info, outcome, time.time() - start)


def plan_metrics(metrics, num_images):
    """{metric name: (kind, item count)}; `<kind>_full` counts the validation images."""
    plan = {}
    for name in metrics:
        kind, count = metric_main.parse_metric(name)
        plan[name] = (kind, num_images if count is None else count)
    return plan


def num_plan_items(plan):
    """Items per protocol that a run of `plan` inpaints: the largest metric count."""
    return max(count for _kind, count in plan.values())


def check_stored_completions(methods, dataset, protocols, seed, plan):
    """Check every --results folder against this run's protocol (hash, file set, sizes) before any work."""
    stored = [m for m in methods if m.kind == "results"]
    if not stored:
        return
    from metrics.protocol_export import describe_protocol

    expected = describe_protocol(dataset, protocols, seed, num_plan_items(plan))
    for method in stored:
        method.inpainter.check(expected)
        method.info = dict(protocol_hash=expected["protocol_hash"], manifest=method.inpainter.manifest_path,
                           composited=True)




def prepare_detector(opts, plan, num_images, detector_explicit):
    """(module, info) for the FID/IDS metrics of `plan`, or (None, info) with the reason in info.note.

    A detector the user named (--detector) that fails is an error; the default one (environment variable or the
    public URL) failing turns FID/IDS off with a note in the table, so that an offline pixel comparison still runs.
    The IDS size check needs the feature width, so it runs here too, before any inpainting.
    """
    from metrics.inception_discriminative_score import check_ids_size

    wanted = sorted({kind for kind, _n in plan.values() if kind in DETECTOR_KINDS})
    if not wanted:
        return None, EasyDict(available=False, note="FID and P-IDS/U-IDS not requested (--metrics)")
    try:
        module, detector_id = detector_loader.load_detector(opts.detector, opts.device, opts.cache_dir, opts.rank,
                                                            opts.num_gpus)
    except detector_loader.DetectorError as err:
        if detector_explicit:
            raise
        return None, EasyDict(available=False, note=f"FID and P-IDS/U-IDS not computed: no detector ({err})")
    probe = torch.zeros([1, 3, 32, 32], dtype=torch.uint8, device=opts.device)
    num_features = detector_loader.detector_features(module, probe).shape[1]
    for name, (kind, count) in plan.items():
        if kind == "ids":
            check_ids_size(name, count, num_images, num_features)
    source = detector_loader.resolve_detector_source(opts.detector)
    path = source if os.path.isfile(source) else detector_loader.download_cached(source, opts.cache_dir)
    return module, EasyDict(available=True, source=source, id=detector_id, sha256=file_sha256(path),
                            num_features=int(num_features), note=None)


# ---------------------------------------------------------------------------------------------------------------------
# One pass: every metric of one method under one protocol.

class _Collector:
    """Per-item rows of one pass, kept with their item indices so that ranks can be gathered in item order."""

    def __init__(self):
        self.idx, self.rows = [], []

    def add(self, index, row):
        self.idx.append(index)
        self.rows.append(np.asarray(row, np.float64).reshape(-1))

    def gather(self, opts):
        rows = np.stack(self.rows) if self.rows else np.zeros([0, 0])
        return gather_rows(opts, self.idx, rows)


def _pass_values(plan, pix_rows, fake_feats, real_feats, real_stats):
    """The named values of one pass, as calc_metric would name them."""
    from metrics.frechet_inception_distance import fid_from_features, fid_from_stats
    from metrics.inception_discriminative_score import ids_from_features

    values = {}
    for name, (kind, count) in plan.items():
        if kind == "pix":
            res = pixel_metrics.summarize_rows(pix_rows[:count])
        elif kind == "fid" and fake_feats is not None:
            fake = FeatureStats(capture_mean_cov=True)
            fake.append(fake_feats[:count])
            res = {"fid": fid_from_stats(*real_stats[name].get_mean_cov(), *fake.get_mean_cov())}
        elif kind == "ids" and fake_feats is not None:
            p_ids, u_ids = ids_from_features(real_feats[:count], fake_feats[:count])
            res = {"pids": p_ids, "uids": u_ids, "fid": fid_from_features(real_feats[:count], fake_feats[:count])}
        else:
            continue
        values.update({(name if key == kind else f"{name}_{key}"): value for key, value in res.items()})
    return values


def evaluate_pass(opts, method, spec, plan, detector, real_stats, sheet_count):
    """Inpaint items 0..N-1 of protocol `spec` with `method` once (N: the largest metric count) and compute every
    metric of `plan` on its share of them. Rank 0 returns EasyDict(figures, rows, hole_ratio, sheet); others None.
    rows: the per-item pixel rows (pixel_metrics.ROW_FIELDS) of the largest pix count, for the hole-ratio plot.
    sheet: {item: fake uint8 [H, W, 3]} for items < sheet_count."""
    num_items = num_plan_items(plan)
    n_pix = max([c for k, c in plan.values() if k == "pix"], default=0)
    n_feat = max([c for k, c in plan.values() if k in DETECTOR_KINDS], default=0) if detector is not None else 0
    n_real = max([c for k, c in plan.values() if k == "ids"], default=0) if detector is not None else 0
    pass_opts = EasyDict(opts, mask_spec=spec, G_kwargs=method.G_kwargs, progress=False)
    pix, fake_f, real_f, ratios = _Collector(), _Collector(), _Collector(), _Collector()
    sheet = {}
    share = len(rank_indices(num_items, opts.rank, opts.num_gpus))
    tag = f"{method.label} | {spec}" + (f" (rank 0 of {opts.num_gpus})" if opts.num_gpus > 1 else "")
    bar = tqdm(total=share, desc=tag, unit="img", file=sys.stderr, leave=True,
               disable=not opts.progress or opts.rank != 0, dynamic_ncols=True)
    for pairs in iterate_eval_pairs(pass_opts, method.inpainter, opts.dataset, num_items):
        real, fake = pairs.real.cpu().numpy(), pairs.fake.cpu().numpy()
        masks = pairs.mask.cpu().numpy()[:, 0]
        keep_feat = [k for k, i in enumerate(pairs.indices) if i < n_feat]
        feats = detector_loader.detector_features(detector, pairs.fake[keep_feat]) if keep_feat else None
        keep_real = [k for k, i in enumerate(pairs.indices) if i < n_real]
        rfeats = detector_loader.detector_features(detector, pairs.real[keep_real]) if keep_real else None
        for k, i in enumerate(pairs.indices):
            ratios.add(i, [1.0 - float(masks[k].mean(dtype=np.float64))])
            if i < n_pix:
                pix.add(i, pixel_metrics.pixel_row(real[k], fake[k], masks[k]))
            if i < sheet_count:
                sheet[i] = fake[k].transpose(1, 2, 0).copy()
        for pos, k in enumerate(keep_feat):
            fake_f.add(pairs.indices[k], feats[pos])
        for pos, k in enumerate(keep_real):
            real_f.add(pairs.indices[k], rfeats[pos])
        bar.update(len(pairs.indices))
    bar.close()
    pix_rows, fake_feats, real_feats, ratios = (c.gather(opts) for c in (pix, fake_f, real_f, ratios))
    sheet = gather_dicts(opts, sheet)
    if opts.rank != 0:
        return None
    pix_rows = pix_rows.reshape(-1, len(pixel_metrics.ROW_FIELDS))
    values = _pass_values(plan, pix_rows, fake_feats if n_feat else None, real_feats, real_stats)
    return EasyDict(figures=values, rows=pix_rows, hole_ratio=float(ratios.mean()) if ratios.size else float("nan"),
                    sheet=sheet)


def _sheet_inputs(opts, spec, sheet_count):
    """{item: (real uint8 [H, W, 3], mask [H, W])} for items < sheet_count of protocol `spec`."""
    from data.masks import eval_mask

    items = {}
    for i in range(min(sheet_count, len(opts.dataset))):
        img = np.asarray(opts.dataset[i])
        img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
        items[i] = (img.transpose(1, 2, 0).copy(), eval_mask(spec, opts.resolution, opts.seed, i))
    return items


# ---------------------------------------------------------------------------------------------------------------------
# The record: what results.json holds (report_files makes the other files of it).

def _record(opts, methods, protocols, plan, det_info, outcome, total_time):
    from metrics.baselines import BASELINE_METHODS

    return dict(
        protocol=dict(data=str(opts.data_path or opts.dataset.path), num_images=len(opts.dataset),
                      resolution=opts.resolution, seed=opts.seed, batch=opts.batch_size,
                      metrics={n: dict(kind=k, num_items=c) for n, (k, c) in plan.items()},
                      masks=[dict(spec=spec, mean_hole_ratio=outcome.hole_ratios.get(spec)) for spec in protocols],
                      items=("item i: validation image i % num_images, mask eval_mask(spec, resolution, seed, i), "
                             "latent / search seed from (seed, i); the same for every method"),
                      composite=COMPOSITE_NOTE, detector=dict(det_info), code_version=code_version(),
                      torch=torch.__version__, total_time_s=round(total_time, 1)),
        methods=[dict(key=m.key, label=m.label, kind=m.kind, source=m.source,
                      reference=BASELINE_METHODS[m.source].reference if m.kind == "baseline" else None,
                      G_kwargs=m.G_kwargs, **m.info) for m in methods],
        results=outcome.figures,
        hole_buckets=dict(scheme=HOLE_PLOT_SCHEME, pooled_over=list(protocols),
                          values=_pooled_buckets(methods, protocols, outcome.rows)),
        _sheets=outcome.sheets,
    )


def _pooled_buckets(methods, protocols, rows):
    """{method key: {bucket label: {field: value, num}}} over the pixel rows of all protocols together."""
    from data.masks import HOLE_BUCKETS

    pooled = {}
    for method in methods:
        parts = [rows[method.key][spec] for spec in protocols if len(rows[method.key][spec])]
        if not parts:
            continue
        summary = pixel_metrics.summarize_rows(np.concatenate(parts))
        buckets = {}
        for lo, hi in HOLE_BUCKETS[HOLE_PLOT_SCHEME]:
            label = f"{round(lo * 100)}-{round(hi * 100)}%"
            prefix = f"{HOLE_PLOT_SCHEME}:{label}/"
            fields = {k[len(prefix):]: v for k, v in summary.items() if k.startswith(prefix)}
            if fields:
                buckets[label] = fields
        pooled[method.key] = buckets
    return pooled
