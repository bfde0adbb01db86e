"""CPU inference speed of an exported generator: ONNX Runtime (and OpenVINO when installed) against our fast CPU
path and our reference layers, the same network, inputs and thread count.

Run from the repository root:

    python benchmarks/onnx_runtime.py                          # 256 and 512, batch 1, 2 threads, 7 rounds
    python benchmarks/onnx_runtime.py --resolution 256 --rounds 3 --threads 4

Each resolution builds the released architecture (channel_base 16384, channel_max 512, z = w = 512) with random
weights from seed 0 (the speed does not depend on the weights), exports it with export.py's code (batch 1, const
noise, opset 18) into a temporary folder, and times one forward of a 256/512 image with a centre hole per engine.
Engines run in turns, one call each per round after one untimed call, so that a busy machine slows them alike;
the table gives the median and the fastest round, and the median process CPU time of a call (all threads; with
--threads 1 the figure least moved by other processes on a shared machine). "max abs diff" is against the
reference layers' output (whose scale is printed). OpenVINO (`pip install openvino`) runs on its CPU plugin in
float32 precision.
"""

import os
import platform
import statistics
import sys
import tempfile
import time

import click
import numpy as np
import psutil
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from dnnlib import UserError  # noqa: E402
from inference import fast_path  # noqa: E402
from inference.onnx_export import example_inputs, export_generator  # noqa: E402
from inference.onnx_format import INPUTS  # noqa: E402
from inference.onnx_runner import load_onnx_generator  # noqa: E402
from training.networks import Generator, check_resolution  # noqa: E402


def _cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _openvino(path, threads):
    """A callable running the file on OpenVINO's CPU plugin, or (None, reason)."""
    try:
        import openvino as ov
    except ImportError:
        return None, "not installed (pip install openvino)"
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)
    return (lambda feed: request.infer(feed)[output]), f"OpenVINO {ov.__version__}"


def _engines(G, path, threads):
    """{name: (fn(feed) -> numpy composite, setup seconds)} and notes on the engines that could not run."""
    def torch_fn(impl):
        def run(feed):
            image, mask, z = (torch.from_numpy(feed[k]) for k in INPUTS[:3])
            with torch.inference_mode():
                return G(image, mask, z, truncation_psi=float(feed["truncation_psi"][0]), noise_mode="const",
                         impl=impl).numpy()
        return run

    engines = {"torch fast path": (torch_fn("fast"), 0.0), "torch reference": (torch_fn("ref"), 0.0)}
    start = time.perf_counter()
    runner = load_onnx_generator(path, threads=threads)
    engines["onnxruntime"] = (lambda feed: runner.run(*(feed[k] for k in INPUTS[:3]),
                                                      float(feed["truncation_psi"][0])),
                              time.perf_counter() - start)
    notes = []
    start = time.perf_counter()
    try:
        fn, note = _openvino(path, threads)
    except Exception as err:  # OpenVINO raises its own RuntimeError subclasses; the others still run
        fn, note = None, f"failed to load the file ({str(err).strip().splitlines()[0]})"
    if fn is not None:
        engines["openvino"] = (fn, time.perf_counter() - start)
    notes.append(f"openvino: {note}")
    return engines, notes


def bench_resolution(resolution, threads, rounds, workdir, channel_base=16384, channel_max=512):
    torch.manual_seed(0)
    G = Generator(img_resolution=resolution, channel_base=channel_base, channel_max=channel_max)
    G.eval().requires_grad_(False)
    fast_path.attach(G)
    path = os.path.join(workdir, f"G{resolution}.onnx")
    start = time.perf_counter()
    export_generator(G, path, batch=1, noise_mode="const", source="random weights, seed 0")
    export_s = time.perf_counter() - start
    image, mask, z, psi = example_inputs(G, 1)
    feed = dict(zip(INPUTS, (t.numpy() for t in (image, mask, z, psi))))
    engines, notes = _engines(G, path, threads)
    ref = engines["torch reference"][0](feed)
    diffs = {name: float(np.abs(fn(feed) - ref).max()) for name, (fn, _setup) in engines.items()}  # + warm-up
    times = {name: [] for name in engines}
    cpu = {name: [] for name in engines}
    names = list(engines)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate who goes first
            start, start_cpu = time.perf_counter(), time.process_time()
            engines[name][0](feed)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    rows = []
    for name in names:
        rows.append(dict(res=resolution, engine=name, med=statistics.median(times[name]), best=min(times[name]),
                         cpu=statistics.median(cpu[name]), diff=diffs[name], setup=engines[name][1]))
    return rows, notes, export_s, os.path.getsize(path), float(np.abs(ref).max())


def print_table(rows, header=True):
    fast = {r["res"]: r["med"] for r in rows if r["engine"] == "torch fast path"}
    if header:
        print("| res | engine | median ms | fastest ms | median vs fast path | CPU ms (median) "
              "| max abs diff vs reference | load s |")
        print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['res']} | {r['engine']} | {r['med'] * 1e3:.0f} | {r['best'] * 1e3:.0f} | "
              f"{r['med'] / fast[r['res']]:.2f}x | {r['cpu'] * 1e3:.0f} | {r['diff']:.1e} | {r['setup']:.1f} |",
              flush=True)


@click.command()
@click.option("--resolution", type=int, multiple=True, help="Repeatable; 32..1024. [default: 256 512]")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Intra-op threads of every engine (torch.set_num_threads, ONNX Runtime, OpenVINO).")
@click.option("--rounds", type=click.IntRange(min=1), default=7, show_default=True,
              help="Timed calls per engine (median and fastest reported).")
@click.option("--channel-base", type=click.IntRange(min=1), default=16384, show_default=True, help="Model width.")
@click.option("--channel-max", type=click.IntRange(min=1), default=512, show_default=True, help="Model width cap.")
def main(resolution, threads, rounds, channel_base, channel_max):
    """Time ONNX Runtime, OpenVINO, our fast CPU path and our reference on one exported generator."""
    for res in resolution:
        try:
            check_resolution(res, "--resolution")
        except UserError as err:
            raise click.BadParameter(str(err)) from None
    torch.set_num_threads(threads)
    import onnxruntime

    load = ", ".join(f"{v:.1f}" for v in psutil.getloadavg())
    print(f"{_cpu_name()}, {psutil.cpu_count()} logical cores, {threads} threads per engine; torch "
          f"{torch.__version__}, onnxruntime {onnxruntime.__version__}; load average {load}")
    print(f"batch 1, const noise, psi 1; median and fastest of {rounds} rounds after one untimed call\n")
    all_notes = []
    with tempfile.TemporaryDirectory() as workdir:
        for i, res in enumerate(list(resolution) or [256, 512]):
            res_rows, notes, export_s, size, scale = bench_resolution(res, threads, rounds, workdir, channel_base,
                                                                      channel_max)
            print_table(res_rows, header=i == 0)
            all_notes.append(f"{res}: export {export_s:.0f} s, {size / 2**20:.0f} MB file, output scale {scale:.2f}; "
                             + "; ".join(notes))
            os.remove(os.path.join(workdir, f"G{res}.onnx"))
    print()
    for note in all_notes:
        print(note)


if __name__ == "__main__":
    main()
