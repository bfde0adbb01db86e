"""Measure which variant each layer of the fast CPU path should run here, print the table, and store it.

Run from the repository root:

    python benchmarks/conv_table.py                          # G-256 and G-512, batch 1: print only
    python benchmarks/conv_table.py --write-cache            # this machine's calibration (used from now on)
    python benchmarks/conv_table.py --write-table            # the shipped table of this CPU class

Every planned layer (the encoder's 3x3 convolutions, the synthesis layers, the upsampling layers) runs each of its
variants on a random input of its real shape (inference.fast_path_calibration): best of `--repeats` wall-clock
runs, the variants in turn (`--clock cpu`: process CPU time / threads, for a machine that other work keeps
busy). The chosen variant is the fastest, unless one caching fewer weight bytes is within
3 % of it. The thread count is torch's (`--threads`); a calibration is stored per thread count. To measure the
AVX2 table on a CPU with AVX-512, limit both libraries: ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2.
"""

import json
import os
import sys

import click
import psutil
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from inference import conv_plan, fast_path_calibration  # noqa: E402
from training.networks import Generator, check_resolution  # noqa: E402


def _print_row(key, choice, ms):
    kind, (c_in, c_out, h, w, n) = conv_plan.parse_key(key)
    cells = "  ".join(f"{v} {t:.1f}" for v, t in sorted(ms.items(), key=lambda kv: kv[1]))
    print(f"{kind:>8} {c_in:>4}->{c_out:<4} {h:>4}x{w:<4} n{n:<2} {choice:>22} | {cells}", flush=True)


def _update_table(path, cls, result):
    """Replace CPU class `cls`'s entry of the shipped table at `path` by this measurement."""
    try:
        with open(path, encoding="utf-8") as f:
            tables = json.load(f)
    except FileNotFoundError:
        tables = {}
    tables[cls] = {"machine": conv_plan.machine(), "command": " ".join(sys.argv[1:]), "choices": result["choices"],
                   "ms": result["ms"]}
    fast_path_calibration.write_json(path, tables)


@click.command()
@click.option("--resolution", type=int, multiple=True, help="Repeatable; 32..1024. [default: 256 512]")
@click.option("--batch", type=click.IntRange(min=1), multiple=True, help="Repeatable. [default: 1]")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed rounds (best).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch.set_num_threads.")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
              help="wall: elapsed time; cpu: process CPU time / threads (steadier on a machine busy with other work).")
@click.option("--write-cache", is_flag=True, help="Store the result as this machine's calibration.")
@click.option("--write-table", is_flag=True, help="Store the result as the shipped table of this CPU class.")
def main(resolution, batch, repeats, threads, clock, write_cache, write_table):
    """Time every fast-path variant of each layer of G-256 and G-512 and print the fastest."""
    if threads:
        torch.set_num_threads(threads)
    resolutions = sorted(resolution or [256, 512], reverse=True)  # the larger G holds most of the smaller's layers
    for res in resolutions:
        check_resolution(res, "--resolution")
    mach = conv_plan.machine()
    print(f"cpu: {mach['cpu']} ({mach['cpu_class']}), {mach['threads']} torch threads, {psutil.cpu_count()} "
          f"logical cores; torch {mach['torch']}; env {mach['env'] or 'none'}; load average "
          + ", ".join(f"{v:.1f}" for v in psutil.getloadavg()))
    print(f"best of {repeats} runs per variant, ms ({clock} clock); chosen = fastest unless a leaner one is within "
          f"{fast_path_calibration.MARGIN:.0%}")
    print(f"{'kind':>8} {'channels':^9} {'input':^9} {'n':<3} {'chosen':>22} | variants, fastest first")
    merged = {"choices": {}, "ms": {}, "mb": {}}
    for res in resolutions:
        torch.manual_seed(0)
        G = Generator(img_resolution=res).eval()
        result = fast_path_calibration.calibrate(G, tuple(batch) or (1,), repeats, log=_print_row,
                                                 skip=merged["choices"], clock_kind=clock)
        for part in merged:
            merged[part].update(result[part])
        del G
    if write_cache:
        print(f"calibration written to {fast_path_calibration.save_calibration(merged)}")
    if write_table:
        _update_table(conv_plan.TABLE_PATH, mach["cpu_class"], merged)
        print(f"table of CPU class '{mach['cpu_class']}' written to {conv_plan.TABLE_PATH}")


if __name__ == "__main__":
    main()
