"""The main job on an embedded default (`make demo`): build a small face dataset from scikit-image's faces, train the
`tiny` CoModGAN on the CPU, inpaint held-out faces over several seeds, compare it with the traditional methods
(Telea, Navier-Stokes, PatchMatch) on center, small and large free-form holes, and write results/demo/report.md and
report.html.

Each step calls the same code the user-facing CLIs use (train.py and calc_metrics.py run as subprocesses, exactly
as a user would run them; inpainting goes through inference/inpaint.py, which generate.py wraps).
"""

import collections
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import click
import torch

from dnnlib import EasyDict, UserError, check_output_path
from dnnlib.cli_types import FiniteFloatRange

# The research question at toy scale: the GAN against the traditional methods on small free-form holes, large
# free-form holes (MAT's evaluation presets) and the 25% center square. (The official free-form generator used in
# training draws holes of ~75% on average at 32x32, too few known pixels for a readable demo.)
EVAL_MASKS = ("center", "free-form-small", "free-form-large")
SHEET_MASKS = ("center", "free-form-large")  # the per-seed sheets, which show the diversity of the completions
BASELINES = ("telea", "ns", "patchmatch")  # metrics.baselines.DEFAULT_BASELINES, named here so the demo is fixed
# The networks the demo trains side by side, each with the same preset, data, masks, batch, length and seed: (key,
# table row, extra train.py options). The first is CoModGAN as published, adversarial loss only. The second adds the
# loss's optional L1 reconstruction term (off in the published training) at weight 100, with Adam lr 0.006 instead
# of the published 0.002: pixel metrics score a sample against the one true face, which favours a mean, and the L1
# network's error in the hole falls with lr (docs/demo.md, "What each choice does"). The report shows both.
Network = collections.namedtuple("Network", "key label train_args")
NETWORKS = (Network("gan", "CoModGAN tiny (ours)", ()),
            Network("gan-l1", "CoModGAN tiny + L1 (ours)", ("--l1-weight", "100", "--lr", "0.006")))
# Batch 8, not the preset's 32: four times the optimizer steps per image, which removes the coloured ring along the
# hole's edge and gains on every pixel metric in the same minutes (docs/demo.md).
DEMO_BATCH = 8
DEMO_KIMG = 14.0  # per network: both train side by side in ~8 min on 2 cores at batch 8 (33-37 s/kimg each)
# The per-seed sheets draw completions the way calc_metrics.py measures them: the global code's dropout on (the
# official evaluation) and fresh per-pixel noise (the Generator's default). 'const' noise would stamp one fixed
# noise image into every face and seed, which reads as a grid of speckle wherever the network learned a strong
# noise strength at 32x32.
DROPOUT = True
NOISE_MODE = "random"
# Half the official free-form generator's holes (~75% of the image at 32x32), half the 25% center hole: the free-form
# half makes the published network's seeds differ more (most of a large hole must come from the latent) and teaches
# the L1 network the small holes that center-only training loses (docs/demo.md).
TRAIN_MASK = "mixed:free-form=0.5,center=0.5"
RESOLUTION = 32  # the tiny preset's resolution
HERE = os.path.dirname(os.path.abspath(__file__))


def _log(msg, t0):
    print(f"[demo {time.time() - t0:6.1f}s] {msg}", flush=True)


def _start_script(args, log_path, env=None):
    """Start one of our CLIs with this interpreter (args[0] relative to the repository), its output going to
    log_path; env adds to this process's environment."""
    cmd = [sys.executable, os.path.join(HERE, args[0]), *map(str, args[1:])]
    log = open(log_path, "w", encoding="utf-8")
    try:
        proc = subprocess.Popen(cmd, cwd=HERE, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=None if env is None else {**os.environ, **env})
    except BaseException:
        log.close()
        raise
    return EasyDict(cmd=cmd, proc=proc, log=log, log_path=log_path)  # _run_scripts waits for it


def _check_script(job):
    """Raise with the log's tail if a job of _start_script has failed (nothing while it runs)."""
    if job.proc.returncode:
        with open(job.log_path, encoding="utf-8") as log:
            tail = log.read()[-3000:]
        raise UserError(f"{' '.join(job.cmd[1:3])} ... failed (exit {job.proc.returncode}); log {job.log_path}:\n"
                        f"{tail}")


def _run_scripts(runs, env=None, poll_s=0.1):
    """Run [(args, log_path), ...] side by side until all finish; the first failure stops the others and raises."""
    jobs = []
    try:
        for args, log_path in runs:
            jobs.append(_start_script(args, log_path, env))
        while True:
            running = [job.proc.poll() is None for job in jobs]
            for job in jobs:
                _check_script(job)
            if not any(running):
                break
            time.sleep(poll_s)
    finally:
        for job in jobs:
            if job.proc.poll() is None:
                job.proc.kill()
                job.proc.wait()
            job.log.close()


def _run_script(args, log_path):
    _run_scripts([(args, log_path)])


def data_step(outdir, opts):
    """The 100 scikit-image faces -> dataset_tool.py (32x32 RGB zip plus a held-out zip) -> held-out PNG files."""
    from demo_lib.faces import export_images, write_face_pngs

    data_dir = os.path.join(outdir, "data")
    faces_dir = os.path.join(data_dir, "lfw-faces")
    write_face_pngs(faces_dir)
    data = EasyDict(train_zip=os.path.join(data_dir, "faces.zip"), val_zip=os.path.join(data_dir, "faces-val.zip"),
                    val_dir=os.path.join(data_dir, "val-images"))
    _run_script(["dataset_tool.py", "--source", faces_dir, "--dest", data.train_zip, "--resolution", RESOLUTION,
                 "--val-count", opts.num_val, "--seed", opts.seed, "--workers", 1, "--force"],
                os.path.join(data_dir, "dataset_tool.log"))
    shutil.rmtree(data.val_dir, ignore_errors=True)  # a rerun with another --num-val must not keep old faces
    data.num_val = len(export_images(data.val_zip, data.val_dir))
    data.num_train = len(os.listdir(faces_dir)) - data.num_val
    return data


def train_threads(device, num_networks, cpus=None):
    """CPU threads per training process: the cores split between the networks, which train side by side (None on
    an accelerator: the device does the work). At batch 8 a tiny step takes nearly as long on one thread as on two
    (benchmarks/train_step.py; figures in docs/demo.md), so two one-thread runs side by side train about 1.9x the
    images that two two-thread runs in turn do, in the same minutes."""
    if device.type != "cpu":
        return None
    return max((cpus or os.cpu_count() or 1) // num_networks, 1)


def train_step(data, outdir, opts, threads):
    """Train `tiny` on the training faces, the networks of NETWORKS side by side, each for opts.kimg; returns their
    last snapshots.

    --workers 0: 90 cached faces and their 32x32 masks are cheap to draw in the training process, and worker
    processes would only compete with the training threads for the cores. threads: train_threads' figure."""
    env = None if threads is None else {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    # One folder per network (train.py numbers the runs inside), so runs started together never race for a name.
    run_roots = [os.path.join(outdir, "training-runs", net.key) for net in NETWORKS]
    _run_scripts([(["train.py", "--cfg", "tiny", "--data", data.train_zip, "--mask", TRAIN_MASK, "--outdir", root,
                    "--kimg", f"{opts.kimg:g}", "--metrics", "none", "--seed", opts.seed, "--device", opts.device,
                    "--workers", 0, "--batch", opts.batch, *net.train_args, *opts.train_args],
                   os.path.join(outdir, f"train-{net.key}.log")) for net, root in zip(NETWORKS, run_roots)], env)
    snapshots = []
    for root in run_roots:
        snaps = sorted(glob.glob(os.path.join(root, "*", "network-snapshot-*.pt")))  # the newest run's last
        if not snaps:
            raise UserError(f"{root}: training finished without writing a snapshot")
        snapshots.append(snaps[-1])
    return snapshots


def generate_step(G, data, outdir, opts, device, key="gan"):
    """Inpaint every held-out face with each sheet mask over the seeds (generate.py's code path, grids on), and
    build one comparison sheet per mask: input | each baseline | ours per seed | original."""
    from data.image_io import read_image_rgb
    from demo_lib.report import comparison_sheet, hole_edge_stats, save_sheet, seed_diversity
    from inference.user_files import list_images, run_generate, spec_mask_for_image
    from metrics.baselines import make_baseline

    baselines = [make_baseline(name) for name in BASELINES]
    sheets = []
    for spec in SHEET_MASKS:
        gen_dir = os.path.join(outdir, "generate", key, spec)
        gen_opts = EasyDict(images=data.val_dir, masks=spec, seeds=opts.seeds, outdir=gen_dir, truncation_psi=1.0,
                            noise_mode=NOISE_MODE, dropout=DROPOUT, mask_hole="white", mask_seed=0, grid=True,
                            batch_size=len(opts.seeds))
        summary = run_generate(G, gen_opts, device)
        if summary.failures:
            raise UserError(f"generate on {data.val_dir} failed: {summary.failures[0][1]}")
        rows = []
        for path in list_images(data.val_dir):
            img = read_image_rgb(path)
            mask = spec_mask_for_image(spec, img.shape[0], img.shape[1], path, 0)
            stem = os.path.splitext(os.path.basename(path))[0]
            ours = [read_image_rgb(os.path.join(gen_dir, f"{stem}-seed{s:04d}.png")) for s in opts.seeds]
            rows.append(dict(image=img, mask=mask, ours=ours,
                             baselines=[b.inpaint_image(img, mask, seed=0) for b in baselines]))
        rel = f"comparison-{key}-{spec}.png"
        save_sheet(comparison_sheet(rows), os.path.join(outdir, rel))
        sheets.append((key, spec, rel, seed_diversity(rows), hole_edge_stats(rows)))
    return sheets


def metrics_step(snapshots, data, outdir, opts):
    """One comparison run of calc_metrics.py: the network and the baselines on the same held-out faces, masks and
    latents, for every protocol; returns the record it wrote (comparison/results.json)."""
    comp_dir = os.path.join(outdir, "comparison")
    args = ["calc_metrics.py", *[a for label, path in snapshots for a in ("--network", f"{label}={path}")],
            "--baseline", ",".join(BASELINES),
            "--data", data.val_zip, "--mask", ",".join(EVAL_MASKS), "--metrics", opts.metric, "--seed", opts.seed,
            "--device", opts.device, "--outdir", comp_dir, "--sheet", min(8, data.num_val)]
    os.makedirs(comp_dir, exist_ok=True)
    _run_script(args, os.path.join(comp_dir, "calc_metrics.log"))
    with open(os.path.join(comp_dir, "results.json"), encoding="utf-8") as f:
        return json.load(f)


def _diversity_text(div, num_seeds):
    if div is None:
        return "One seed: no diversity to measure."
    return (f"Seed diversity: the {num_seeds} seeds' completions differ by a mean pairwise L1 of {div:.4f} "
            f"inside the hole (|a - b| / 255, averaged over the faces).")


def _edge_text(edge):
    if edge is None:
        return ""
    text = (f" Where the fills meet the face: a mean brightness step of {edge['step']:.4f} across the hole's edge "
            f"(the real faces: {edge['step_real']:.4f}); a mean distance from gray of {edge['colour_edge']:.4f} on "
            "the hole's first two pixels")
    if edge["colour_inside"] is not None:
        text += f" and {edge['colour_inside']:.4f} further in"
    return text + " (the faces are gray)."


def report_step(outdir, info, record, sheets, opts):
    from demo_lib.report import sheet_header, verdict_lines, write_report
    from metrics.baselines import BASELINE_METHODS

    info = dict(info, table_note=" ".join([info["table_note"], *verdict_lines(record)]))
    header = " | ".join(sheet_header([BASELINE_METHODS[b].label for b in BASELINES], opts.seeds))
    captions = [("All methods by protocol", "comparison/sheet.png",
                 f"calc_metrics.py's sheet: the first {min(8, info['num_val'])} held-out faces under each protocol; "
                 "columns: input, each method (the network with the evaluation's latents), original."),
                ("Pixel metrics by hole ratio", "comparison/holes.png",
                 "Each pixel metric against the hole-ratio bucket, the items of all protocols pooled.")]
    labels = {net.key: net.label for net in NETWORKS}
    captions += [(f"{labels[key]}: held-out faces, {spec} holes, several seeds", rel,
                  f"Columns: {header}. Each row is a face never seen in training. "
                  + _diversity_text(div, len(opts.seeds)) + _edge_text(edge))
                 for key, spec, rel, div, edge in sheets]
    return write_report(outdir, info, record, captions)


@click.command()
@click.option("--outdir", default="results/demo", show_default=True, help="Where the report and everything else go.")
@click.option("--kimg", type=FiniteFloatRange(min=0.001), default=DEMO_KIMG, show_default=True,
              help="Training length of each network in thousands of images (they train side by side; the main "
                   "knob for the demo's run time).")
@click.option("--batch", type=click.IntRange(min=1), default=DEMO_BATCH, show_default=True,
              help="Training batch size (the tiny preset's is 32).")
@click.option("--seeds", default="0-3", show_default=True, help="Seeds shown per held-out face.")
@click.option("--num-val", type=click.IntRange(min=1, max=99), default=10, show_default=True,
              help="How many of the 100 faces are held out.")
@click.option("--metric", default="pix200", show_default=True, help="Pixel metric (items cycle over held-out faces).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Training and evaluation seed.")
@click.option("--device", default="cpu", show_default=True, help="cpu (the demo's target), auto or cuda.")
@click.option("--train-arg", "train_args", multiple=True, help="Extra option passed to train.py (repeatable).")
def main(**kwargs):
    """Train, inpaint and evaluate on the embedded faces; prints where the report is."""
    from inference.inpaint import parse_seeds
    from inference.loading import load_generator
    from torch_utils.misc import resolve_device

    opts = EasyDict(kwargs)
    t0 = time.time()
    try:
        opts.seeds = parse_seeds(opts.seeds)
        device = resolve_device(opts.device)
        check_output_path(opts.outdir, "--outdir")
        os.makedirs(opts.outdir, exist_ok=True)
        data = data_step(opts.outdir, opts)
        _log(f"dataset: {data.num_train} training / {data.num_val} held-out faces in {opts.outdir}/data", t0)
        t_train, threads = time.time(), train_threads(device, len(NETWORKS))
        _log(f"training {len(NETWORKS)} networks side by side (tiny, {opts.kimg:g} kimg each, batch {opts.batch}) "
             f"on {device} (logs: {opts.outdir}/train-*.log) ...", t0)
        snapshots = list(zip([net.label for net in NETWORKS], train_step(data, opts.outdir, opts, threads)))
        t_train = time.time() - t_train
        _log(f"trained: {', '.join(p for _l, p in snapshots)}", t0)
        sheets = []
        for net, (_label, snapshot) in zip(NETWORKS, snapshots):
            sheets += generate_step(load_generator(snapshot, device), data, opts.outdir, opts, device, net.key)
        _log(f"inpainted the held-out faces ({', '.join(SHEET_MASKS)}; seeds {opts.seeds})", t0)
        for _key, spec, _rel, div, _edge in sheets:
            _log(f"  seed diversity ({_key}, {spec}): mean pairwise L1 in the hole {div}", t0)
        record = metrics_step(snapshots, data, opts.outdir, opts)
        _log(f"compared the network with {', '.join(BASELINES)} on {', '.join(EVAL_MASKS)}", t0)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    info = _report_info(opts, data, [os.path.relpath(p, opts.outdir) for _l, p in snapshots], t0, t_train, threads)
    md_path, html_path = report_step(opts.outdir, info, record, sheets, opts)
    _log(f"done. Open {html_path} (or {md_path}); grids per face in {opts.outdir}/generate/", t0)


def _train_option(outdir, snapshot, key):
    """One resolved option of the training run, from the training_options.json train.py writes."""
    path = os.path.join(outdir, os.path.dirname(snapshot), "training_options.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get(key, "?")
    except (OSError, ValueError):
        return "?"


def _threads_text(threads):
    return "" if threads is None else f", {threads} CPU thread{'s' if threads > 1 else ''} each"


def _report_info(opts, data, snapshots, t0, t_train, threads):
    """snapshots: one path relative to outdir per NETWORKS entry."""
    nets = "; ".join(f"{net.label} ({' '.join(net.train_args) if net.train_args else 'adversarial loss only'}): "
                     f"{snap}"
                     for net, snap in zip(NETWORKS, snapshots))
    return dict(
        title="CoModGAN demo: inpainting held-out faces",
        summary_lines=[
            f"Data: the {data.num_train + data.num_val} face crops shipped with scikit-image (lfw_subset), 25x25 gray, "
            f"made into 32x32 RGB archives by dataset_tool.py; {data.num_train} for training, {data.num_val} held "
            "out (never seen in training).",
            f"Training: config tiny, {opts.kimg:g} kimg per network, batch "
            f"{_train_option(opts.outdir, snapshots[0], 'batch')}, masks {TRAIN_MASK}, seed {opts.seed}, on "
            f"{opts.device} ({t_train / 60:.1f} min for {len(snapshots)} networks side by side"
            f"{_threads_text(threads)}; torch {torch.__version__}, "
            f"{os.cpu_count()} CPUs). Snapshots: {nets}.",
            f"Total demo time: {(time.time() - t0) / 60:.1f} min.",
        ],
        files=[
            ("generate/", "per network, held-out face and mask: FACE-seedNNNN.png, FACE-grid.png (input with the "
                          "hole, then each seed) and FACE-mask.png (white = hole), as generate.py writes them"),
            ("training-runs/", "one folder per network (gan/, gan-l1/) with its training run: log.txt, stats.jsonl, "
                               "training_options.json, fakes*.png grids and the snapshots"),
            ("comparison/", "calc_metrics.py's comparison run: results.json (every figure and the protocol), "
                            "results.md, results.csv, holes.png, sheet.png and its log"),
            ("data/", "the face PNGs, the dataset_tool.py archives (faces.zip, faces-val.zip) and the held-out PNGs"),
        ],
        num_val=data.num_val,
        table_note=(f"{opts.metric}: every held-out face is evaluated with several reproducible masks "
                    f"(calc_metrics.py, seed {opts.seed}, dropout on); all methods see identical images, masks and "
                    "latents."),
    )


if __name__ == "__main__":
    main()
