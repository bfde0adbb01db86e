"""Benchmark of the custom ops at the shapes of the 256 and 512 generators: reference on CPU, CUDA vs reference on GPU.

Usage: python benchmarks/ops.py [--full] [--batch N] [--repeats N] [--threads N]
The default run is short (a subset of resolutions, few repeats); --full covers every resolution 8..512.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import upfirdn2d as U  # noqa: E402
from torch_utils.ops.bias_act import bias_act  # noqa: E402
from torch_utils.ops.modulated_conv2d import modulated_conv2d  # noqa: E402

CHANNEL_BASE, CHANNEL_MAX = 16384, 512  # Generator defaults (training/networks.py)


def channels(res):
    return min(CHANNEL_BASE // res, CHANNEL_MAX)


def timed_ms(fn, repeats, device):
    """Median wall time of `fn` in ms after one warm-up call (CUDA-synchronised on GPU)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def cases(res, batch, device):
    """(name, shape text, {impl: callable}) for the ops one synthesis block at `res` runs."""
    c, cl = channels(res), channels(res // 2)
    f = U.setup_filter([1, 3, 3, 1], device=device)
    lo = torch.randn(batch, cl, res // 2, res // 2, device=device)
    hi = torch.randn(batch, c, res, res, device=device)
    b = torch.randn(c, device=device)
    w = torch.randn(c, cl, 3, 3, device=device)
    s = torch.randn(batch, cl, device=device)

    def by_impl(fn):
        return {impl: (lambda impl=impl: fn(impl)) for impl in ("ref", "cuda")}

    return [
        ("upsample2d", f"{cl}x{res // 2}^2", by_impl(lambda impl: U.upsample2d(lo, f, impl=impl))),
        ("downsample2d", f"{c}x{res}^2", by_impl(lambda impl: U.downsample2d(hi, f, impl=impl))),
        ("filter2d", f"{c}x{res}^2", by_impl(lambda impl: U.filter2d(hi, f, impl=impl))),
        ("bias_act lrelu", f"{c}x{res}^2", by_impl(lambda impl: bias_act(hi, b, act="lrelu", clamp=256, impl=impl))),
        ("modconv 3x3 up2", f"{cl}->{c}x{res}^2",
         {"ref": lambda: modulated_conv2d(lo, w, s, up=2, padding=1, resample_filter=f, flip_weight=False)}),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every resolution 8..512 (default: 16, 64, 256, 512)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per op (median is printed)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    gpu = torch.device("cuda") if torch.cuda.is_available() else None
    cpu = torch.device("cpu")
    resolutions = [8, 16, 32, 64, 128, 256, 512] if args.full else [16, 64, 256, 512]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}, "
          f"median of {args.repeats}; GPU: {torch.cuda.get_device_name(gpu) if gpu else 'none'}")
    header = f"{'op':<16} {'shape':<18} {'CPU ref ms':>11}"
    if gpu:
        plugin_ok = custom_ops.get_plugin() is not None
        header += f" {'GPU ref ms':>11} {'GPU cuda ms':>12} {'speed-up':>9}"
        print(f"CUDA extension: {'built' if plugin_ok else 'NOT available (cuda column = reference)'}")
    print(header)
    print("-" * len(header))
    with torch.no_grad():
        for res in resolutions:
            gpu_cases = cases(res, args.batch, gpu) if gpu else None
            for i, (name, shape, fns) in enumerate(cases(res, args.batch, cpu)):
                line = f"{name:<16} {shape:<18} {timed_ms(fns['ref'], args.repeats, cpu):11.2f}"
                if gpu:
                    gfns = gpu_cases[i][2]
                    ref_ms = timed_ms(gfns["ref"], args.repeats * 5, gpu)
                    if "cuda" in gfns:
                        cuda_ms = timed_ms(gfns["cuda"], args.repeats * 5, gpu)
                        line += f" {ref_ms:11.3f} {cuda_ms:12.3f} {ref_ms / cuda_ms:8.2f}x"
                    else:
                        line += f" {ref_ms:11.3f} {'-':>12} {'-':>9}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
