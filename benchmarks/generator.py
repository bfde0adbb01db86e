"""Speed figures of the CoModGAN generator: forward time per image, FLOPs, peak memory, and a G+D training step.

Run from the repository root:

    python benchmarks/generator.py                        # 256 and 512, batch 1 and 4 (+ a train step on CUDA)
    python benchmarks/generator.py --resolution 512 --batch 1 --device cpu
    python benchmarks/generator.py --device cpu --train    # also the G+D training step (minutes on a CPU)

Times are medians over `--repeats` timed runs after `--warmup` untimed ones (wall clock; CUDA is synchronised
around every run). FLOPs come from torch.utils.flop_counter.FlopCounterMode (matmul/conv only, multiply-add =
2 FLOPs); they are the network's count, taken on the reference path (the counter's module hooks select it),
so GFLOP/s is the direct-convolution count over the time: "effective" for the fast path, whose Winograd layers
do fewer multiplies (inference.fast_path). Peak memory: on CUDA torch.cuda.max_memory_allocated; on the CPU
the peak growth over the process's baseline of glibc malloc's bytes in use (the RSS where mallinfo2 is
missing; the fast path keeps freed memory mapped, see torch_utils.cpu_malloc, so the RSS stops growing),
sampled every millisecond by a background thread (an estimate: the interval blurs it by a few MB).

`--impl fast` (default) times what Generator does by default in eval mode without autograd (on the CPU:
inference.fast_path); `--impl ref` the reference layers.
"""

import ctypes
import os
import statistics
import sys
import threading
import time

import click
import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from cli_options import impl_option  # noqa: E402
from dnnlib import UserError  # noqa: E402
from inference import fast_path  # noqa: E402
from torch_utils.misc import resolve_device  # noqa: E402
from training.networks import Discriminator, Generator, check_resolution, count_params  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(batch, resolution, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    img = (torch.rand([batch, 3, resolution, resolution], generator=gen) * 2 - 1).to(device)
    mask = torch.ones([batch, 1, resolution, resolution])
    q = resolution // 4
    mask[:, :, q : 3 * q, q : 3 * q] = 0  # a centre hole of 25 %: the cost does not depend on the mask
    z = torch.randn([batch, 512], generator=gen).to(device)
    return img, mask.to(device), z


def time_runs(fn, device, warmup, repeats):
    """Seconds per call of fn(): all timed runs, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _memory_probe():
    """A function returning this process's memory in use (bytes): glibc malloc's count if available, else RSS."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
        mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        proc = psutil.Process()
        return lambda: proc.memory_info().rss

    def in_use():
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return in_use


class _MemoryPeak:
    """Context manager sampling the memory in use; `.peak` = max growth over the value at entry (bytes)."""

    def __init__(self, interval=0.001):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._probe = _memory_probe()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._probe() - self._base)
            time.sleep(self.interval)

    def __enter__(self):
        self._base = self._probe()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._probe() - self._base)


def peak_memory(fn, device):
    """Peak memory (bytes) of one call of fn(), beyond what was allocated before it."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    with _MemoryPeak() as mem:
        fn()
    return mem.peak


def count_flops(fn):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_forward(G, resolution, batch, device, warmup, repeats, impl="fast"):
    """One row of the forward table: G in eval mode, const noise, no autograd, implementation `impl`."""
    img, mask, z = _inputs(batch, resolution, device)

    def run():
        with torch.inference_mode():
            G(img, mask, z, noise_mode="const", impl=impl)

    times = time_runs(run, device, warmup, repeats)
    flops = count_flops(run)
    mem = peak_memory(run, device)
    med = statistics.median(times)
    return dict(res=resolution, batch=batch, ms_img=med / batch * 1e3, min_ms_img=min(times) / batch * 1e3,
                gflop_img=flops / batch / 1e9, gflops=flops / med / 1e9, mem_mb=mem / 2**20)


def bench_train_step(resolution, batch, device, warmup, repeats, channel_base, channel_max):
    """Seconds of one G step + one D step (non-saturating logistic losses, Adam), without R1."""
    G = Generator(img_resolution=resolution, channel_base=channel_base, channel_max=channel_max).to(device).train()
    D = Discriminator(img_resolution=resolution, channel_base=channel_base, channel_max=channel_max).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99), eps=1e-8)
    img, mask, z = _inputs(batch, resolution, device)
    softplus = torch.nn.functional.softplus

    def step():
        opt_g.zero_grad(set_to_none=True)
        softplus(-D(G(img, mask, z, update_emas=True), mask)).mean().backward()
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = G(img, mask, torch.randn_like(z))
        (softplus(D(fake, mask)).mean() + softplus(-D(img, mask)).mean()).backward()
        opt_d.step()

    times = time_runs(step, device, warmup, repeats)
    flops = count_flops(step)
    mem = peak_memory(step, device)
    return statistics.median(times), min(times), flops, mem


def _header(device):
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu, {torch.get_num_threads()} torch threads, {psutil.cpu_count()} logical cores"
    # A busy machine (load above the core count) makes multi-threaded CPU timings unreliable: print it.
    load = ", ".join(f"{v:.1f}" for v in psutil.getloadavg())
    return f"device: {device} ({name}); torch {torch.__version__}; load average {load}"


def run_benchmarks(device, resolutions, batches, warmup, repeats, train, train_batch, channel_base, channel_max,
                   impl="fast"):
    for res in resolutions:
        check_resolution(res, "--resolution")
    print(_header(device))
    print(f"median of {repeats} runs after {warmup} warm-up; channel_base {channel_base}, channel_max {channel_max}")
    if resolutions and batches:
        bench_forward_table(device, resolutions, batches, warmup, repeats, channel_base, channel_max, impl)
    if train:
        print(f"\nG+D training step at 256, batch {train_batch} (G step + D step, Adam, no R1) ...", flush=True)
        med, best, flops, mem = bench_train_step(256, train_batch, device, warmup, repeats, channel_base, channel_max)
        print(f"  median {med * 1e3:.0f} ms/step ({med / train_batch * 1e3:.0f} ms/img), min {best * 1e3:.0f} ms; "
              f"{flops / 1e9:.1f} GFLOP/step, {flops / med / 1e9:.1f} GFLOP/s; peak {mem / 2**20:.0f} MB")


def bench_forward_table(device, resolutions, batches, warmup, repeats, channel_base, channel_max, impl="fast"):
    print(f"\nG forward (eval, noise_mode='const', inference_mode, impl='{impl}')")
    cols = f"{'res':>5} {'batch':>5} {'ms/img':>10} {'min ms/img':>11} {'GFLOP/img':>10} {'GFLOP/s':>9} {'peak MB':>9}"
    print(cols)
    for res in resolutions:
        torch.manual_seed(0)
        G = Generator(img_resolution=res, channel_base=channel_base, channel_max=channel_max).to(device).eval()
        fast_path.attach(G)
        for batch in batches:
            r = bench_forward(G, res, batch, device, warmup, repeats, impl)
            print(f"{r['res']:>5} {r['batch']:>5} {r['ms_img']:>10.1f} {r['min_ms_img']:>11.1f} "
                  f"{r['gflop_img']:>10.2f} {r['gflops']:>9.1f} {r['mem_mb']:>9.0f}", flush=True)
        print(f"      (G at {res}: {count_params(G):,} trainable parameters)")
        del G


@click.command()
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--resolution", type=int, multiple=True, help="Repeatable; 32..1024. [default: 256 512]")
@click.option("--batch", type=click.IntRange(min=1), multiple=True, help="Repeatable. [default: 1 4]")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed runs (median).")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Untimed runs first.")
@click.option("--forward/--no-forward", default=True, show_default=True, help="Time the G forward table.")
@click.option("--train/--no-train", default=None,
              help="Also time a G+D training step at 256 [default: on CUDA only; minutes per step on a CPU].")
@click.option("--train-batch", type=click.IntRange(min=1), default=4, show_default=True, help="Batch of the step.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch.set_num_threads (CPU).")
@click.option("--channel-base", type=click.IntRange(min=1), default=16384, show_default=True, help="Model width.")
@click.option("--channel-max", type=click.IntRange(min=1), default=512, show_default=True, help="Model width cap.")
@impl_option
def main(device, resolution, batch, repeats, warmup, forward, train, train_batch, threads, channel_base, channel_max,
         impl):
    """Time the CoModGAN generator's forward (per image, batch 1 and 4, at 256 and 512) and a G+D train step."""
    if threads:
        torch.set_num_threads(threads)
    try:
        batches = (list(batch) or [1, 4]) if forward else []
        dev = resolve_device(device)
        train = dev.type == "cuda" if train is None else train
        run_benchmarks(dev, list(resolution) or [256, 512], batches, warmup, repeats, train, train_batch,
                       channel_base, channel_max, impl)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
