"""One-time calibration of the fast CPU path on this machine: time every variant of each planned layer of a
Generator and keep the fastest (inference.conv_plan reads the result, like cuDNN's benchmark mode).

The layers run on random inputs of their real shapes (the time does not depend on the values). A variant that
caches more prepared weight bytes than another (a Winograd transform is 4x the weight, oneDNN's packed copy 1x,
a per-call modulated weight nothing) is kept only if it is more than `margin` faster, so memory is spent where it
buys time.
"""

import json
import os
import tempfile
import time

import torch

from inference import conv_plan, fast_path

MARGIN = 0.03  # a variant caching more bytes must be this much faster than a leaner one


def clock(kind):
    """A seconds counter: 'wall' (time.perf_counter), or 'cpu': this process's CPU time over torch's thread count,
    which on an idle machine approaches the wall time of the multi-threaded work and on a busy one (other
    processes on the cores) stays what the work costs, where the wall clock swells with every preemption."""
    if kind == "wall":
        return time.perf_counter
    if kind == "cpu":
        threads = torch.get_num_threads()
        return lambda: time.process_time() / threads
    raise ValueError(f"clock must be 'wall' or 'cpu', got {kind!r}")


def planned_layers(G, batch=1):
    """[(kind, module, input shape, c_out)] of every layer of G whose variant the plan chooses, at `batch`."""
    enc, syn = G.encoder, G.synthesis
    out = []
    for res in enc.block_resolutions[:-1]:
        conv = getattr(enc, f"b{res}").conv0
        out.append(("conv", conv, (batch, conv.in_channels, res, res), conv.out_channels))
    out.append(("conv", enc.b4.conv, (batch, enc.b4.conv.in_channels, 4, 4), enc.b4.conv.out_channels))
    out.append(("synth", syn.b4.conv, (batch, syn.b4.conv.in_channels, 4, 4), syn.b4.conv.out_channels))
    for res in syn.block_resolutions:
        block = getattr(syn, f"b{res}")
        out.append(("synth_up", block.conv0, (batch, block.conv0.in_channels, res // 2, res // 2),
                    block.conv0.out_channels))
        out.append(("synth", block.conv1, (batch, block.conv1.in_channels, res, res), block.conv1.out_channels))
    return out


def _runner(kind, module, x_shape, variant, dtype):
    """A fresh cache and a function running the layer once with `variant` on a random input."""
    cache = fast_path._Cache(None, dtype, conv_plan.Plan())
    x = torch.randn(x_shape).to(dtype).contiguous(memory_format=torch.channels_last)
    if kind == "conv":
        return cache, lambda: fast_path.encoder_conv(cache, module, x, variant)
    mod = torch.randn([x_shape[0], module.affine.in_features])
    return cache, lambda: fast_path.synthesis_layer(cache, module, x, mod, "const", variant)


def _choose(times, nbytes, margin):
    """The fastest variant, unless one caching fewer bytes is within `margin` of its time."""
    best = min(times, key=times.get)
    lean = [v for v in times if nbytes[v] < nbytes[best] and times[v] <= times[best] * (1 + margin)]
    return min(lean, key=lambda v: (nbytes[v], times[v])) if lean else best


def time_layer(kind, module, x_shape, c_out, repeats=3, dtype=torch.float32, clock_kind="wall"):
    """({variant: best seconds}, {variant: cached bytes}) of one layer; the variants run in turn, `repeats` rounds
    after one warm-up round (which also prepares each variant's cached weights), timed by clock(clock_kind)."""
    now = clock(clock_kind)
    runners = {v: _runner(kind, module, x_shape, v, dtype)
               for v in conv_plan.variants(kind, x_shape, dtype == torch.float32)}
    times = {v: float("inf") for v in runners}
    with torch.inference_mode():
        for _, run in runners.values():
            run()
        for _ in range(repeats):
            for v, (_, run) in runners.items():
                start = now()
                run()
                times[v] = min(times[v], now() - start)
    return times, {v: cache.nbytes() for v, (cache, _) in runners.items()}


def calibrate(G, batches=(1,), repeats=3, margin=MARGIN, log=None, skip=(), clock_kind="wall"):
    """Time every variant of each planned layer of G (float32) at each batch size; returns {"choices": {key:
    variant}, "ms": {key: {variant: ms}}, "mb": {key: {variant: cached MB}}}. `log(key, choice, ms)` is called
    after each layer (progress); keys in `skip` are left out (measured already); `clock_kind` as clock()."""
    result = {"choices": {}, "ms": {}, "mb": {}}
    for batch in batches:
        for kind, module, x_shape, c_out in planned_layers(G, batch):
            key = conv_plan.layer_key(kind, x_shape, c_out)
            if key in result["choices"] or key in skip:
                continue
            times, nbytes = time_layer(kind, module, x_shape, c_out, repeats, clock_kind=clock_kind)
            result["choices"][key] = _choose(times, nbytes, margin)
            result["ms"][key] = {v: round(t * 1e3, 3) for v, t in times.items()}
            result["mb"][key] = {v: round(b / 2**20, 2) for v, b in nbytes.items()}
            if log is not None:
                log(key, result["choices"][key], result["ms"][key])
    return result


def write_json(path, data):
    """Write `data` as JSON to `path` atomically (a temp file in the same folder, then os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_calibration(result, path=None):
    """Store a calibrate() result as this machine's calibration (conv_plan.cache_path()); returns the path. The
    next forward of any Generator uses it."""
    path = conv_plan.cache_path() if path is None else path
    write_json(path, {"machine": conv_plan.machine(), **result})
    conv_plan.forget_loaded_plans()
    return path
