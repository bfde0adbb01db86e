"""Training speed: seconds per kimg and peak memory of full training steps (G main, D main, lazy R1) per preset.

Runs `tiny` on the CPU, and celebahq256 / celebahq512 where a CUDA device exists, on synthetic images with center
masks (no dataset needed). The lazy R1 step is timed separately and weighted 1/16, as in training.

Run from the repository root:

    python -m benchmarks.train_step                   # tiny on CPU (+ celebahq256/512 on CUDA)
    python -m benchmarks.train_step --cfg celebahq512 --batch-gpu 4
    python -m benchmarks.train_step --threads 1       # one CPU thread (best on a busy machine)

s/kimg is the median main step plus 1/16 of the extra cost of the R1 step, divided by the batch, for one process.
Peak memory: torch.cuda.max_memory_allocated on CUDA, the process's peak RSS on the CPU.

The cost of augmentation (--aug-p, repeatable): the same preset with the augmentation of everything D sees at fixed
strengths p, against noaug, timed in turn step by step (a drifting machine slows all alike) and printed as s/step
(median main step + 1/16 of the R1 step's extra, as above) of each and its ratio to noaug:

    python -m benchmarks.train_step --threads 1 --aug-p 0 --aug-p 0.2 --aug-p 1
"""

import os
import resource
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from torch_utils.misc import resolve_device  # noqa: E402
from training import config, training_loop  # noqa: E402
from training.distributed import DistInfo  # noqa: E402


def _synthetic_batch(c, device, gen):
    img = torch.randint(0, 256, [c.batch, 3, c.resolution, c.resolution], dtype=torch.uint8, generator=gen)
    mask = torch.ones([c.batch, 1, c.resolution, c.resolution])
    q = c.resolution // 4
    mask[:, :, q:-q, q:-q] = 0
    return img.to(device), mask.to(device)


def _timed_step(c, state, info, phases, batch, step):
    state.step = step
    if info.device.type == "cuda":
        torch.cuda.synchronize(info.device)
    t0 = time.perf_counter()
    # The same synthetic batch serves as the G and the D batch (the loop fetches one of each per step).
    training_loop.training_step(c, state, info, phases, [batch] * len(training_loop.BATCH_PARTS), {})
    if info.device.type == "cuda":
        torch.cuda.synchronize(info.device)
    return time.perf_counter() - t0


def _aug_variant(cfg, device, batch_gpu, batch, p):
    """(label, c, state, phases) of one arm: noaug (p None), or the ADA pipeline held at strength p."""
    opts = dict(cfg=cfg, data="synthetic", mask="center", outdir=".", batch=batch, batch_gpu=batch_gpu, workers=0,
                device=str(device), aug="noaug" if p is None else "ada", aug_p=p)
    c = config.build_config(opts, data_resolution=config.preset_resolution(cfg) or 256)
    state = training_loop.build_state(c, DistInfo(device=device))
    if state.ada is not None:
        state.ada = None  # hold p where the row says
    return ("noaug" if p is None else f"p={p:g}"), c, state, training_loop.make_phases(c, state)


def bench_aug(cfg, device, steps, ps, batch_gpu=None, batch=None):
    """[(label, s/step)] for noaug and each p, the arms timed in turn, step by step."""
    info = DistInfo(device=device)
    arms = [_aug_variant(cfg, device, batch_gpu, batch, p) for p in [None, *ps]]
    batch_data = _synthetic_batch(arms[0][1], device, torch.Generator().manual_seed(0))
    interval = arms[0][1].d_reg_interval
    main = {label: [] for label, *_ in arms}
    reg = {label: [] for label, *_ in arms}
    for i in range(1 + steps):  # i = 0 warms up
        for label, c, state, phases in arms:
            main[label].append(_timed_step(c, state, info, phases, batch_data, step=i % (interval - 1) + 1))
            if i < 3:  # the R1 step, three times: its median
                reg[label].append(_timed_step(c, state, info, phases, batch_data, step=interval))
    rows = []
    for label in main:
        t_main = sorted(main[label][1:])[steps // 2]
        t_reg = sorted(reg[label])[1]
        rows.append((label, t_main + max(t_reg - t_main, 0) / interval))
    return rows


def bench(cfg, device, steps, batch_gpu=None, batch=None):
    """Returns dict(sec_per_kimg, peak_mem_gb, ...) for one preset on one device."""
    opts = dict(cfg=cfg, data="synthetic", mask="center", outdir=".", batch=batch, batch_gpu=batch_gpu, workers=0,
                device=str(device))
    c = config.build_config(opts, data_resolution=config.preset_resolution(cfg) or 256)
    info = DistInfo(device=device)
    state = training_loop.build_state(c, info)
    phases = training_loop.make_phases(c, state)
    batch = _synthetic_batch(c, device, torch.Generator().manual_seed(0))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _timed_step(c, state, info, phases, batch, step=1)  # warm-up (kernels, allocator)
    main = [_timed_step(c, state, info, phases, batch, step=s) for s in range(2, 2 + steps)]
    with_reg = _timed_step(c, state, info, phases, batch, step=c.d_reg_interval)
    t_main = sorted(main)[len(main) // 2]
    t_step = t_main + max(with_reg - t_main, 0) / c.d_reg_interval
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
    return dict(cfg=cfg, device=str(device), resolution=c.resolution, batch=c.batch, batch_gpu=c.batch_gpu,
                sec_per_step=t_step, sec_per_kimg=t_step / c.batch * 1000, reg_step_s=with_reg, peak_mem_gb=peak)


@click.command()
@click.option("--cfg", "cfgs", multiple=True, help="Presets to time [default: tiny on CPU; +celebahq256/512 on CUDA].")
@click.option("--steps", type=click.IntRange(min=1), default=3, help="Timed main steps per preset (median).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads [default: torch's].")
@click.option("--batch-gpu", type=click.IntRange(min=1), default=None, help="Per-device batch [default: preset].")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Total batch [default: preset].")
@click.option("--aug-p", "aug_ps", type=click.FloatRange(0, 1), multiple=True,
              help="Instead: time augmentation at these strengths p against noaug (first --cfg, default tiny).")
def main(cfgs, steps, threads, batch_gpu, batch, aug_ps):
    if threads:
        torch.set_num_threads(threads)
    if aug_ps:
        cfg = cfgs[0] if cfgs else "tiny"
        device = resolve_device("cuda" if torch.cuda.is_available() and cfg != "tiny" else "cpu")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; {cfg} on {device}, median of "
              f"{steps} main steps and 3 R1 steps per arm, arms in turn")
        rows = bench_aug(cfg, device, steps, aug_ps, batch_gpu, batch)
        base = rows[0][1]
        print(f"{'augment':<8} {'s/step':>8} {'vs noaug':>9}")
        for label, t in rows:
            print(f"{label:<8} {t:>8.4f} {t / base:>9.3f}")
        return
    cuda = torch.cuda.is_available()
    runs = [(cfg, resolve_device("cuda" if cuda and cfg != "tiny" else "cpu")) for cfg in cfgs] if cfgs else \
        [("tiny", torch.device("cpu"))] + ([("celebahq256", torch.device("cuda")),
                                             ("celebahq512", torch.device("cuda"))] if cuda else [])
    if not cuda:
        print("no CUDA device: presets run on the CPU", file=sys.stderr)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'cfg':<12} {'device':<7} {'res':>4} {'batch':>5} {'b/gpu':>5} {'s/step':>8} {'s/kimg':>9} {'peak GB':>8}")
    for cfg, device in runs:
        r = bench(cfg, device, steps, batch_gpu, batch)
        print(f"{r['cfg']:<12} {r['device']:<7} {r['resolution']:>4} {r['batch']:>5} {r['batch_gpu']:>5} "
              f"{r['sec_per_step']:>8.3f} {r['sec_per_kimg']:>9.1f} {r['peak_mem_gb']:>8.2f}")


if __name__ == "__main__":
    main()
