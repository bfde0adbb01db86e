"""Benchmark of the traditional inpainters (metrics/baselines.py): seconds per image at 256 and 512 with evaluation
masks, on scikit-image's astronaut photo (a face, shipped with scikit-image: nothing downloads).

Usage: python benchmarks/baselines.py [--resolution 256 --resolution 512] [--method telea ...] [--mask center ...]
    [--repeats 3] [--threads N]
Each (method, resolution, mask) runs `--repeats` evaluation masks (items 0, 1, ... of the spec, seed 0); the table
gives the median and the slowest wall time per image, the median CPU time (all threads) and the mean hole ratio.
With PatchMatch among the methods, a second table gives each other method's median CPU time as a multiple of
PatchMatch's on the same case (e.g. `--method criminisi --method patchmatch`).
"""

import os
import statistics
import sys
import time

import click
import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from data.masks import eval_mask, hole_ratio  # noqa: E402
from metrics.baselines import BASELINE_METHODS, list_baselines, make_baseline  # noqa: E402


def test_image(resolution):
    """The astronaut photo (512x512 RGB) resized with area averaging to `resolution`."""
    from skimage.data import astronaut

    return cv2.resize(astronaut(), (resolution, resolution), interpolation=cv2.INTER_AREA)


def time_method(name, resolution, spec, repeats):
    """(median wall s/img, max wall s/img, median CPU s/img, mean hole ratio) of method `name` over `repeats`
    evaluation masks. CPU time (all threads of this process) is the figure to read on a machine shared with other
    jobs: their load stretches the wall time, not it."""
    baseline = make_baseline(name)
    image = test_image(resolution)
    times, cpu, ratios = [], [], []
    for index in range(repeats):
        mask = eval_mask(spec, resolution, 0, index)
        start, start_cpu = time.perf_counter(), time.process_time()
        baseline.inpaint_image(image, mask, seed=index)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        ratios.append(hole_ratio(mask))
    return statistics.median(times), max(times), statistics.median(cpu), float(np.mean(ratios))


@click.command()
@click.option("--resolution", "resolutions", type=click.IntRange(min=16), multiple=True, default=(256, 512),
              show_default=True, help="Image side in pixels (repeatable).")
@click.option("--method", "methods", type=click.Choice(list(BASELINE_METHODS)), multiple=True,
              help="Method to time (repeatable; default: every one that loads here).")
@click.option("--mask", "masks", multiple=True, default=("center", "free-form-large"), show_default=True,
              help="Evaluation mask spec (repeatable).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Masks per case.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="OpenCV threads (default: OpenCV's choice, all cores).")
def main(resolutions, methods, masks, repeats, threads):
    """Print seconds per image of each traditional inpainter."""
    if threads is not None:
        cv2.setNumThreads(threads)
    methods = methods or tuple(list_baselines())
    missing = sorted(set(BASELINE_METHODS) - set(list_baselines()))
    if missing:
        print(f"not available here: {', '.join(missing)}")
    print(f"{os.cpu_count()} CPUs, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), {repeats} masks per case")
    print(f"{'method':<12s} {'res':>5s} {'mask':<18s} {'hole':>6s} {'median s/img':>13s} {'max s/img':>10s} "
          f"{'CPU s/img':>10s}")
    cpu_times = {}
    for name in methods:
        for res in resolutions:
            for spec in masks:
                median, slowest, cpu, ratio = time_method(name, res, spec, repeats)
                cpu_times[name, res, spec] = cpu
                print(f"{name:<12s} {res:>5d} {spec:<18s} {ratio:>6.2f} {median:>13.3f} {slowest:>10.3f} {cpu:>10.3f}",
                      flush=True)
    others = [name for name in methods if name != "patchmatch"]
    if "patchmatch" in methods and others:
        print("CPU time as a multiple of patchmatch's")
        print(f"{'method':<12s} {'res':>5s} {'mask':<18s} {'x patchmatch':>13s}")
        for name in others:
            for res in resolutions:
                for spec in masks:
                    times = cpu_times[name, res, spec], cpu_times["patchmatch", res, spec]
                    print(f"{name:<12s} {res:>5d} {spec:<18s} {times[0] / max(times[1], 1e-9):>12.2f}x")


if __name__ == "__main__":
    main()
