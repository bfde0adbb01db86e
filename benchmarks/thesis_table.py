"""The table of docs/thesis-table.md from one run: a network, the traditional methods and another method's
completions scored on the same items, the other method run outside from the exported protocol.

Usage: python benchmarks/thesis_table.py [--outdir results/thesis-table] [--kimg 4] [--network SNAPSHOT]

Steps, each with the command-line tool a user runs (as subprocesses, their logs in OUTDIR):
1. data: scikit-image's 100 face crops (lfw_subset) -> dataset_tool.py at 32x32, 20 held out as faces-val.zip;
2. network: train.py --cfg tiny for --kimg on the other 80 (or --network SNAPSHOT, skipping this step);
3. export: calc_metrics.py --export-protocol on the held-out faces, masks center and free-form-small;
4. another method: benchmarks/external_method.py --method biharmonic (scikit-image), from the exported PNGs alone;
5. score: one calc_metrics.py run with the network, telea, ns, patchmatch, fsr-fast, shiftmap and --results.
Prints the markdown table of results.md, the machine and the seconds of each step.
"""

import os
import platform
import shutil
import subprocess
import sys
import time
from glob import glob

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from demo_lib.faces import write_face_pngs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASKS = "center,free-form-small"
BASELINES = "telea,ns,patchmatch,fsr-fast,shiftmap,criminisi"
METRICS = "pix_full"  # FID/IDS need the Inception detector (a download) and >= 2048 images for IDS
NUM_VAL = 20
TRAIN_MASK = "mixed:free-form=0.5,center=0.5"  # the demo's training masks


def _run(args, log_path):
    """Run one of the repository's scripts with this interpreter; its output goes to log_path; raise on failure."""
    cmd = [sys.executable, os.path.join(REPO, args[0]), *map(str, args[1:])]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        with open(log_path, encoding="utf-8") as log:
            tail = log.read()[-3000:]
        raise click.ClickException(f"{' '.join(args[:2])} ... failed (exit {proc.returncode}), log {log_path}:\n{tail}")


@click.command()
@click.option("--outdir", type=click.Path(file_okay=False), default="results/thesis-table", show_default=True,
              help="Where the data, the network, the export, the completions and the comparison go.")
@click.option("--kimg", type=click.FloatRange(min=0.001), default=4.0, show_default=True,
              help="Training length of the tiny network (thousands of images).")
@click.option("--network", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Score this snapshot (32x32) instead of training one.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the held-out split, the training and the evaluation masks.")
def main(outdir, kimg, network, seed):
    """Export, run another method outside, score everything in one run; print the table."""
    outdir = os.path.abspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    times = {}
    t = time.time()
    data = os.path.join(outdir, "data")
    write_face_pngs(os.path.join(data, "lfw-faces"))
    _run(["dataset_tool.py", "--source", os.path.join(data, "lfw-faces"), "--dest", os.path.join(data, "faces.zip"),
          "--resolution", 32, "--val-count", NUM_VAL, "--seed", seed, "--workers", 1, "--force"],
         os.path.join(outdir, "dataset_tool.log"))
    val = os.path.join(data, "faces-val.zip")
    times["data"] = time.time() - t
    trained = network is None
    if trained:
        t = time.time()
        runs = os.path.join(outdir, "training-runs")
        _run(["train.py", "--cfg", "tiny", "--data", os.path.join(data, "faces.zip"), "--mask", TRAIN_MASK,
              "--outdir", runs, "--kimg", f"{kimg:g}", "--batch", 8, "--metrics", "none", "--seed", seed,
              "--device", "cpu", "--workers", 0], os.path.join(outdir, "train.log"))
        network = sorted(glob(os.path.join(runs, "*", "network-snapshot-*.pt")))[-1]
        times["train"] = time.time() - t
    common = ["--data", val, "--mask", MASKS, "--metrics", METRICS, "--seed", seed]
    export = os.path.join(outdir, "protocol")
    completions = os.path.join(outdir, "biharmonic-out")
    for folder in (export, completions, os.path.join(outdir, "comparison")):
        shutil.rmtree(folder, ignore_errors=True)  # the export refuses a used folder; a rerun starts clean
    t = time.time()
    _run(["calc_metrics.py", "--export-protocol", export, *common], os.path.join(outdir, "export.log"))
    times["export"] = time.time() - t
    t = time.time()
    _run(["benchmarks/external_method.py", "--protocol", export, "--out", completions, "--method", "biharmonic"],
         os.path.join(outdir, "external.log"))
    times["biharmonic (outside)"] = time.time() - t
    t = time.time()
    _run(["calc_metrics.py", "--network", f"CoModGAN tiny={network}", "--baseline", BASELINES,
          "--results", f"Biharmonic (--results)={completions}", *common, "--device", "cpu",
          "--outdir", os.path.join(outdir, "comparison")], os.path.join(outdir, "score.log"))
    times["score"] = time.time() - t
    with open(os.path.join(outdir, "comparison", "results.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    print("\n".join(line for line in lines if line and not line.startswith(("#", "!["))))
    source = f"trained here: tiny, {kimg:g} kimg, batch 8" if trained else "given with --network"
    print(f"\nnetwork {network} ({source}); machine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
