"""Speed figures of the CoModGAN generator: forward time per image, FLOPs, peak memory, and a G+D training step.

Run from the repository root:

    python benchmarks/generator.py                        # 256 and 512, batch 1 and 4 (+ a train step on CUDA)
    python benchmarks/generator.py --resolution 512 --batch 1 --device cpu
    python benchmarks/generator.py --device cpu --train    # also the G+D training step (minutes on a CPU)
    python benchmarks/generator.py --device cpu --resolution 512 --batch 1 --impl fast --impl ref --layers

Times are medians over `--repeats` timed runs after `--warmup` untimed ones (wall clock; CUDA is synchronised
around every run). FLOPs come from torch.utils.flop_counter.FlopCounterMode (matmul/conv only, multiply-add =
2 FLOPs); they are the network's count, taken on the reference path (the counter's module hooks select it),
so GFLOP/s is the direct-convolution count over the time: "effective" for the fast path, whose Winograd layers
do fewer multiplies (inference.fast_path). Peak memory: on CUDA torch.cuda.max_memory_allocated; on the CPU
the peak growth over the process's baseline of glibc malloc's bytes in use (the RSS where mallinfo2 is
missing; the fast path keeps freed memory mapped, see torch_utils.cpu_malloc, so the RSS stops growing),
sampled every millisecond by a background thread (an estimate: the interval blurs it by a few MB). On the CPU
each (impl, resolution) runs in a fresh process, whose whole peak resident memory (torch, G, the fast path's
prepared weights, activations: what a user's process holds; read before the FLOP count's reference forward) is
the 'RSS MB' column.

`--impl fast` (default) times what Generator does by default in eval mode without autograd (on the CPU:
inference.fast_path, with the layer variants of inference.conv_plan); `--impl ref` the reference layers;
repeat the option for several rows. `--layers` adds each layer's time (best over the timed runs) and each
variant the fast path ran. `--clock cpu` times by the process's CPU time over torch's thread count, which
on a machine busy with other work stays near what an idle machine's wall clock would show.
"""

import collections
import ctypes
import multiprocessing
import os
import resource
import statistics
import sys
import threading
import time

import click
import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from dnnlib import UserError  # noqa: E402
from inference import conv_plan, fast_path  # noqa: E402
from inference.fast_path_calibration import clock as make_clock  # noqa: E402
from inference.impls import IMPL_HELP, IMPLS  # noqa: E402
from torch_utils.misc import resolve_device  # noqa: E402
from torch_utils.ops import upfirdn2d  # noqa: E402
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


def time_runs(fn, device, warmup, repeats, clock="wall"):
    """Seconds per call of fn(): all timed runs, after `warmup` untimed calls (`clock`: 'wall' or 'cpu', see
    inference.fast_path_calibration.clock)."""
    now = make_clock(clock)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = now()
        fn()
        _sync(device)
        times.append(now() - start)
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


class LayerTimer:
    """Context manager timing each layer of one Generator's forwards: the fast path's layer functions (and the
    variant each ran), or the reference modules through forward hooks. `.best` = {layer: best seconds}."""

    _FAST = ("encoder_conv", "synthesis_layer", "torgb")

    def __init__(self, G, impl, clock="wall"):
        self.G, self.impl, self.now = G, impl, make_clock(clock)
        self.names = {m: n for n, m in G.named_modules()}
        self.times, self.variants = collections.defaultdict(list), {}
        self._undo = []

    def _record(self, name, start):
        self.times[name].append(self.now() - start)

    def _wrap(self, fn):
        def timed(cache, layer, *args, **kwargs):
            start = self.now()
            out = fn(cache, layer, *args, **kwargs)
            self._record(self.names.get(layer, fn.__name__), start)
            return out

        return timed

    def _note_variant(self, fn):
        def noted(cache, kind, x, c_out):
            variant = fn(cache, kind, x, c_out)
            self.variants[conv_plan.layer_key(kind, tuple(x.shape), c_out)] = variant
            return variant

        return noted

    def __enter__(self):
        if self.impl == "ref":
            kinds = ("Conv2dLayer", "SynthesisLayer", "ToRGBLayer")
            for m in [m for m in self.G.modules() if type(m).__name__ in kinds]:
                self._undo.append(m.register_forward_pre_hook(lambda mod, _: setattr(mod, "_t0", self.now())))
                self._undo.append(m.register_forward_hook(lambda mod, *_: self._record(self.names[mod], mod._t0)))
            return self
        for name in self._FAST:
            self._patch(fast_path, name, self._wrap(getattr(fast_path, name)))
        self._patch(fast_path._Cache, "variant", self._note_variant(fast_path._Cache.variant))
        upsample = upfirdn2d.upsample2d

        def timed_upsample(*args, **kwargs):
            start = self.now()
            out = upsample(*args, **kwargs)
            self._record("image upsampling", start)
            return out

        self._patch(upfirdn2d, "upsample2d", timed_upsample)
        return self

    def _patch(self, owner, name, value):
        old = getattr(owner, name)
        setattr(owner, name, value)
        self._undo.append((owner, name, old))

    def __exit__(self, *exc):
        for item in reversed(self._undo):
            if isinstance(item, tuple):
                setattr(*item)
            else:
                item.remove()
        self.best = {name: min(t) for name, t in self.times.items()}


def bench_forward(G, resolution, batch, device, warmup, repeats, impl="fast", clock="wall", layers=False,
                  flops=True):
    """One row of the forward table: G in eval mode, const noise, no autograd, implementation `impl`; with
    `layers`, also {layer: best seconds} and the fast path's {layer key: variant} of the timed runs. flops=False
    leaves the FLOP count (a reference forward, which would add its own memory to the process) to add_flops()."""
    img, mask, z = _inputs(batch, resolution, device)

    def run():
        with torch.inference_mode():
            G(img, mask, z, noise_mode="const", impl=impl)

    timer = None
    if layers:
        with LayerTimer(G, impl, clock) as timer:
            times = time_runs(run, device, warmup, repeats, clock)
    else:
        times = time_runs(run, device, warmup, repeats, clock)
    mem = peak_memory(run, device)
    med = statistics.median(times)
    row = dict(impl=impl, res=resolution, batch=batch, ms_img=med / batch * 1e3, min_ms_img=min(times) / batch * 1e3,
               mem_mb=mem / 2**20, layers=None if timer is None else timer.best,
               variants=None if timer is None else timer.variants)
    return add_flops(row, G, device) if flops else row


def add_flops(row, G, device):
    """Fill in a row's GFLOP/img and GFLOP/s (FlopCounterMode on one forward of G, see the module docstring)."""
    img, mask, z = _inputs(row["batch"], row["res"], device)

    def run():
        with torch.inference_mode():
            G(img, mask, z, noise_mode="const", impl=row["impl"])

    flops = count_flops(run)
    row.update(gflop_img=flops / row["batch"] / 1e9, gflops=flops / row["batch"] / row["ms_img"] / 1e6)
    return row


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
                   impls=("fast",), clock="wall", layers=False):
    for res in resolutions:
        check_resolution(res, "--resolution")
    print(_header(device))
    if device.type == "cpu":
        print(f"fast path: CPU class {conv_plan.cpu_class()}, layer variants from the "
              f"{conv_plan.current_plan().source}")
    print(f"median of {repeats} runs after {warmup} warm-up ({clock} clock); channel_base {channel_base}, "
          f"channel_max {channel_max}")
    if resolutions and batches:
        bench_forward_table(device, resolutions, batches, warmup, repeats, channel_base, channel_max, impls, clock,
                            layers)
    if train:
        print(f"\nG+D training step at 256, batch {train_batch} (G step + D step, Adam, no R1) ...", flush=True)
        med, best, flops, mem = bench_train_step(256, train_batch, device, warmup, repeats, channel_base, channel_max)
        print(f"  median {med * 1e3:.0f} ms/step ({med / train_batch * 1e3:.0f} ms/img), min {best * 1e3:.0f} ms; "
              f"{flops / 1e9:.1f} GFLOP/step, {flops / med / 1e9:.1f} GFLOP/s; peak {mem / 2**20:.0f} MB")


def forward_rows(device, res, batches, warmup, repeats, channel_base, channel_max, impl, clock, layers, threads):
    """The rows of one (resolution, impl) and G's parameter count; on the CPU also this process's peak RSS (MB)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    G = Generator(img_resolution=res, channel_base=channel_base, channel_max=channel_max).to(device).eval()
    fast_path.attach(G)
    rows = [bench_forward(G, res, batch, device, warmup, repeats, impl, clock, layers, flops=False)
            for batch in batches]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if device.type == "cpu" else None
    return [add_flops(row, G, device) for row in rows], count_params(G), rss


def _print_layers(row, top=12):
    total = sum(row["layers"].values())
    print(f"      slowest layers of {row['impl']} at {row['res']}, batch {row['batch']} (best ms; all layers "
          f"{total * 1e3:.0f} ms):")
    for name, t in sorted(row["layers"].items(), key=lambda kv: -kv[1])[:top]:
        print(f"      {t * 1e3:9.1f}  {name}")
    if row["variants"]:
        print("      variants: " + "; ".join(f"{k} {v}" for k, v in sorted(row["variants"].items())))


def bench_forward_table(device, resolutions, batches, warmup, repeats, channel_base, channel_max, impls=("fast",),
                        clock="wall", layers=False):
    """Print one row per (impl, resolution, batch). On the CPU each (impl, resolution) runs in a fresh process, so
    that its peak RSS is that of a process doing only this."""
    print("\nG forward (eval, noise_mode='const', inference_mode)")
    print(f"{'impl':>9} {'res':>5} {'batch':>5} {'ms/img':>10} {'min ms/img':>11} {'GFLOP/img':>10} {'GFLOP/s':>9} "
          f"{'peak MB':>9} {'RSS MB':>8}")
    for res in resolutions:
        for impl in impls:
            args = (device, res, batches, warmup, repeats, channel_base, channel_max, impl, clock, layers,
                    torch.get_num_threads())
            if device.type == "cpu":
                with multiprocessing.get_context("spawn").Pool(1) as pool:
                    rows, params, rss = pool.apply(forward_rows, args)
            else:
                rows, params, rss = forward_rows(*args)
            for r in rows:
                rss_text = "-" if rss is None else f"{rss:.0f}"
                print(f"{r['impl']:>9} {r['res']:>5} {r['batch']:>5} {r['ms_img']:>10.1f} {r['min_ms_img']:>11.1f} "
                      f"{r['gflop_img']:>10.2f} {r['gflops']:>9.1f} {r['mem_mb']:>9.0f} {rss_text:>8}", flush=True)
                if layers:
                    _print_layers(r)
        print(f"      (G at {res}: {params:,} trainable parameters)")


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
@click.option("--impl", type=click.Choice(IMPLS), multiple=True, help=IMPL_HELP + " Repeatable. [default: fast]")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
              help="wall: elapsed time; cpu: process CPU time / threads (steadier on a machine busy with other work).")
@click.option("--layers", is_flag=True, help="Also print the slowest layers and the fast path's variants.")
def main(device, resolution, batch, repeats, warmup, forward, train, train_batch, threads, channel_base, channel_max,
         impl, clock, layers):
    """Time the CoModGAN generator's forward (per image, batch 1 and 4, at 256 and 512) and a G+D train step."""
    if threads:
        torch.set_num_threads(threads)
    try:
        batches = (list(batch) or [1, 4]) if forward else []
        dev = resolve_device(device)
        train = dev.type == "cuda" if train is None else train
        run_benchmarks(dev, list(resolution) or [256, 512], batches, warmup, repeats, train, train_batch,
                       channel_base, channel_max, tuple(impl) or ("fast",), clock, layers)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
