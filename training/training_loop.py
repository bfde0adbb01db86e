"""The training loop: run directory, seeded data stream, phases (G main, D main, D reg), EMA, ticks, snapshots,
image grids, metrics and exact resume."""

import dataclasses
import json
import os
import re
import sys
import time

import numpy as np
import psutil
import torch
from tqdm import tqdm

from dnnlib import EasyDict, UserError
from training import augment, checkpoint, distributed, freeze_d, init_weights
from training.loss import CoModGANLoss, ema_beta, update_ema
from training.options import RunFacts, options_record

RUN_DIR_RE = re.compile(r"^(\d+)-")


class TrainingDiverged(RuntimeError):
    """A loss, gradient or parameter became NaN/Inf; the message names the phase and the last good snapshot."""


# ---------------------------------------------------------------------------------------------------------------
# Run directory and resume.


def _run_dirs(outdir):
    """Existing run directories of `outdir` as (id, path), highest id first."""
    if not os.path.isdir(outdir):
        return []
    found = []
    for name in os.listdir(outdir):
        match = RUN_DIR_RE.match(name)
        if match and os.path.isdir(os.path.join(outdir, name)):
            found.append((int(match.group(1)), os.path.join(outdir, name)))
    return sorted(found, reverse=True)


def resolve_run(c, description):
    """Decide the run directory and the snapshot to resume from. Returns (run_dir, resume_path or None).

    'latest' and 'auto' continue inside the newest run directory that holds a snapshot (a preempted job that
    reruns the same command carries on where it stopped); a PATH starts a new run directory from that snapshot.
    """
    runs = _run_dirs(c.outdir)
    if c.resume in ("latest", "auto"):
        for _run_id, run_dir in runs:
            snap = checkpoint.latest_snapshot(run_dir)
            if snap is not None:
                return run_dir, snap
        if c.resume == "latest":
            raise UserError(f"--resume latest: no snapshot (network-snapshot-*.pt) in any run directory of "
                            f"--outdir {c.outdir}; start without --resume or use --resume auto")
        resume_path = None
    elif c.resume:
        resume_path = c.resume
    else:
        resume_path = None
    next_id = runs[0][0] + 1 if runs else 0
    return os.path.join(c.outdir, f"{next_id:05d}-{description}"), resume_path


def check_resume(c, resume_path):
    """Load the snapshot to resume from and check that it fits the configured networks (before training)."""
    if os.fspath(resume_path).lower().endswith(".pth"):
        # Read as the PyTorch port's net_G_ema file everywhere else (inference.loading), which has only G_ema.
        raise UserError(f"--resume {resume_path}: a .pth is the PyTorch port's generator (G_ema only; G and D are "
                        f"absent), so training cannot resume from it")
    data = checkpoint.load_snapshot(resume_path)
    checkpoint.check_resumable(data, f"--resume {resume_path}")  # a G_ema-only import has no G or D to go on from
    for key in ("G_kwargs", "D_kwargs"):
        # The snapshot's kwargs are complete (defaults filled in); ours list only what the preset sets.
        saved, ours = _with_defaults(key, data[key]), _plain(getattr(c, key))
        if any(saved.get(name) != value for name, value in ours.items()):
            raise UserError(f"--resume {resume_path}: its {key} {json.dumps(data[key], sort_keys=True)} differ from "
                            f"this run's {json.dumps(ours, sort_keys=True)}; use the same "
                            f"--cfg/--fp32/--style-mod/--cond-mod")
    return data


def _with_defaults(key, kwargs):
    """A snapshot's kwargs with the constructor's defaults for keywords added after it was written (the loaders
    build such a snapshot with those defaults too, e.g. style_mod=True)."""
    import inspect

    from training.networks import Discriminator, Generator

    cls = Generator if key == "G_kwargs" else Discriminator
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **kwargs}


def _plain(obj):
    return json.loads(json.dumps(obj))


class RunLog:
    """Prints progress on rank 0 and appends it to run_dir/log.txt; also writes stats.jsonl and TensorBoard."""

    def __init__(self, run_dir, is_main):
        self.run_dir, self.is_main = run_dir, is_main
        self.tb = None
        if is_main:
            os.makedirs(run_dir, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(run_dir)
            except ImportError:
                self.tb = None  # tensorboard is optional; stats.jsonl carries the same numbers

    def print(self, message):
        if not self.is_main:
            return
        print(message, flush=True)
        with open(os.path.join(self.run_dir, "log.txt"), "a", encoding="utf-8") as f:
            f.write(message + "\n")

    def stats(self, record):
        if not self.is_main:
            return
        with open(os.path.join(self.run_dir, "stats.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("tick", "timestamp"):
                    self.tb.add_scalar(key, value, global_step=round(record["kimg"] * 1000))  # int() truncated
            self.tb.flush()

    def close(self):
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------------------------------------
# Seeded data stream: everything random in a step is a function of (seed, step), so a resumed run replays it.


def step_seed(seed, step, *tags):
    """A 32-bit seed derived from the run seed, the global step and any tags (phase, rank, round)."""
    return int(np.random.SeedSequence([int(seed), int(step), *map(int, tags)]).generate_state(1)[0])


# The (real, mask) batches of one step: the official loop runs data_fetch_op before the G step and again before
# the D step (training_loop.py, "Run training ops"); the G path-length and D R1 steps reuse their phase's batch.
BATCH_PARTS = ("G", "D")


class StepSampler(torch.utils.data.Sampler):
    """Yields, for each step from `start_step` on, this rank's share of the step's global batches, one per
    entry of BATCH_PARTS (the G batch, then the D batch).

    A global batch (image indices, mirror flips, mask seeds) depends only on (seed, step, part): it is identical
    for any number of ranks, workers or rounds, and after a resume.
    """

    def __init__(self, num_images, batch, rank, world_size, seed, mirror, start_step=0):
        super().__init__()
        self.num_images, self.batch, self.rank, self.world_size = num_images, batch, rank, world_size
        self.seed, self.mirror, self.start_step = seed, mirror, start_step

    def items(self, step, part=0):
        rng = np.random.default_rng(step_seed(self.seed, step, 1, part))
        idx = rng.integers(self.num_images, size=self.batch)
        flip = rng.random(self.batch) < 0.5 if self.mirror else np.zeros(self.batch, dtype=bool)
        mask_seed = rng.integers(2**63 - 1, size=self.batch)
        share = self.batch // self.world_size
        lo = self.rank * share
        return [(int(idx[i]), bool(flip[i]), int(mask_seed[i])) for i in range(lo, lo + share)]

    def __iter__(self):
        step = self.start_step
        while True:
            for part in range(len(BATCH_PARTS)):
                yield self.items(step, part)
            step += 1


class InpaintingData(torch.utils.data.Dataset):
    """Maps (image index, flip, mask seed) to (uint8 image [3, H, W], float mask [1, H, W], 1 = known)."""

    def __init__(self, dataset, mask_spec, resolution):
        self.dataset, self.mask_spec, self.resolution = dataset, mask_spec, resolution
        self._gen = None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        from data.masks import make_mask_generator

        idx, flip, mask_seed = item
        if self._gen is None:  # built lazily: in a worker process, not pickled from the parent
            self._gen = make_mask_generator(self.mask_spec, self.resolution)
        img = np.asarray(self.dataset[idx])
        if flip:
            img = img[:, :, ::-1]
        mask = self._gen(np.random.default_rng(mask_seed)).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(mask[None])


def make_loader(c, dataset, info, start_step):
    sampler = StepSampler(len(dataset), c.batch, info.rank, info.world_size, c.seed, c.mirror, start_step)
    kwargs = dict(num_workers=c.workers, pin_memory=info.device.type == "cuda")
    if c.workers > 0:
        kwargs.update(prefetch_factor=2, persistent_workers=False)
    loader = torch.utils.data.DataLoader(InpaintingData(dataset, c.mask, c.resolution), batch_sampler=sampler,
                                         **kwargs)
    return iter(loader)


def step_latents(c, step, z_dim):
    """The step's z for the G and D phases: global [batch, z_dim] tensors, drawn on the CPU from (seed, step)."""
    gen = torch.Generator().manual_seed(step_seed(c.seed, step, 2))
    return {name: torch.randn([c.batch, z_dim], generator=gen) for name in ("G", "D", "Greg")}


# ---------------------------------------------------------------------------------------------------------------
# Networks, optimisers and phases.


def build_state(c, info):
    """Networks, EMA copy, optimisers (lazy-regularisation rescaled lr/betas) and the loss."""
    from training.networks import Discriminator, Generator

    torch.manual_seed(c.seed)  # rank 0's initial weights win anyway (broadcast below)
    G = Generator(**c.G_kwargs).train().to(info.device)
    D = Discriminator(**c.D_kwargs).train().to(info.device)
    G_ema = Generator(**c.G_kwargs).eval().requires_grad_(False).to(info.device)
    G_ema.load_state_dict(G.state_dict())
    frozen = freeze_d.freeze(D, c.freeze_d)  # before its optimizer, which then never holds them
    opt_G = _adam(G, c, c.g_reg_interval)
    opt_D = _adam(D, c, c.d_reg_interval)
    pipe, ada = _augmentation(c)
    loss = CoModGANLoss(G, D, r1_gamma=c.gamma, style_mixing_prob=c.style_mixing_prob,
                        truncation_psi=c.truncation_psi, pl_weight=c.pl_weight, l1_weight=c.l1_weight,
                        augment_pipe=pipe)
    return EasyDict(G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, loss=loss, augment_pipe=pipe, ada=ada,
                    frozen=frozen,
                    cur_nimg=0, cur_tick=0, step=0, tick_start_nimg=0, time_s=0.0, last_snapshot=None)


def _augmentation(c):
    """(AugmentPipe or None, AdaTuner or None) for --aug noaug|fixed|ada."""
    if c.aug == "noaug":
        return None, None
    pipe = augment.make_augment_pipe(p=c.aug_p)
    if c.aug == "fixed":
        return pipe, None
    return pipe, augment.AdaTuner(pipe, target=c.ada_target, ada_kimg=c.ada_kimg, batch=c.batch,
                                  interval=c.ada_interval)


def _adam(module, c, reg_interval):
    # Lazy regularisation: the main loss steps 1 of every interval + 1 optimizer steps, so lr and betas are
    # rescaled by mb_ratio = interval / (interval + 1) to keep the per-image dynamics of a non-lazy run. The
    # official loop does it for both optimizers whether or not a regulariser exists (training_loop.py, "Setup
    # optimizers"): G gets 4/5 although CoModGAN has no G regulariser.
    ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
    betas = (float(c.betas[0]) ** ratio, float(c.betas[1]) ** ratio)
    params = [p for p in module.parameters() if p.requires_grad]  # not Freeze-D's frozen layers
    return torch.optim.Adam(params, lr=c.lr * ratio, betas=betas, eps=c.eps)


def make_phases(c, state):
    """The phases in the order they run in a step; `tag` keys the per-phase seeds, `z` the step latents used,
    `data` the step batch (BATCH_PARTS) it reads: the regularisation phases reuse their main phase's batch."""
    phases = [EasyDict(name="Gmain", module=state.G, opt=state.opt_G, interval=1, method="g_main", z="G", tag=0,
                       data="G")]
    if c.pl_weight != 0:
        phases.append(EasyDict(name="Greg", module=state.G, opt=state.opt_G, interval=c.g_reg_interval,
                               method="g_pl", z="Greg", tag=1, data="G"))
    phases.append(EasyDict(name="Dmain", module=state.D, opt=state.opt_D, interval=1, method="d_main", z="D", tag=2,
                           data="D"))
    if c.gamma != 0:
        phases.append(EasyDict(name="Dreg", module=state.D, opt=state.opt_D, interval=c.d_reg_interval,
                               method="d_r1", z=None, tag=3, data="D"))
    return phases


def restore_state(state, data, info):
    """Load networks, optimisers, the path-length mean and the progress counters from a snapshot dict."""
    state.G.load_state_dict(data["G"])
    state.G_ema.load_state_dict(data["G_ema"])
    state.D.load_state_dict(data["D"])
    for key in ("opt_G", "opt_D"):
        if key in data:
            # Adam's load_state_dict also brings back the snapshot's lr, betas and eps; a resume keeps the moments
            # but runs with this run's options (e.g. a new --lr), as the user asked for.
            hyper = [{name: group[name] for name in ("lr", "betas", "eps")} for group in state[key].param_groups]
            state[key].load_state_dict(data[key])
            for group, values in zip(state[key].param_groups, hyper):
                group.update(values)
    pl_mean = data.get("loss_state", {}).get("pl_mean")
    if pl_mean is not None:
        state.loss.pl_mean = pl_mean.to(info.device)
    saved_aug = data.get("augment") or {}
    if state.ada is not None and "sign_count" in saved_aug:  # ADA goes on with its p; a fixed p is the option's
        state.ada.load_state_dict(saved_aug)
    progress = data.get("progress", {})
    for key in ("cur_nimg", "cur_tick", "step"):
        state[key] = int(progress.get(key, 0))
    state.tick_start_nimg = state.cur_nimg
    # Training time so far, so that time_s in stats.jsonl goes on from the snapshot's (0 for older snapshots).
    state.time_s = float(data.get("timing", {}).get("time_s", 0.0))


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def snapshot_dict(c, run_facts, state):
    """Everything a resume needs, as tensors and plain data (loadable with weights_only=True); `training_options`
    is the record training_options.json holds (options.options_record)."""
    pl_mean = state.loss.pl_mean
    return {
        "G_kwargs": _plain(state.G.init_kwargs), "D_kwargs": _plain(state.D.init_kwargs),
        "G": _to_cpu(state.G.state_dict()), "G_ema": _to_cpu(state.G_ema.state_dict()),
        "D": _to_cpu(state.D.state_dict()),
        "opt_G": _to_cpu(state.opt_G.state_dict()), "opt_D": _to_cpu(state.opt_D.state_dict()),
        "loss_state": {"pl_mean": None if pl_mean is None else pl_mean.detach().cpu()},
        "augment": _augment_state(state),
        "progress": {"cur_nimg": state.cur_nimg, "cur_tick": state.cur_tick, "step": state.step,
                     "kimg": state.cur_nimg / 1000},
        "timing": {"time_s": state.time_s},  # wall time, kept apart from progress (which a resume reproduces)
        # Per-step RNG is re-derived from (seed, step); the generator states are stored for the record.
        "rng": {"seed": c.seed, "torch_cpu": torch.get_rng_state()},
        "training_options": options_record(c, run_facts),
    }


def _augment_state(state):
    """The augmentation strength and ADA's pending statistics (None without augmentation)."""
    if state.ada is not None:
        return state.ada.state_dict()
    return None if state.augment_pipe is None else {"p": state.augment_pipe.p}


# ---------------------------------------------------------------------------------------------------------------
# One step.


def run_phase(c, state, info, phase, batch, latents, tick_stats):
    """Accumulate one phase's gradients over the rounds, all-reduce them with the stats, check, step."""
    for net in (state.G, state.D):
        net.requires_grad_(net is phase.module)
    for p in state.frozen:  # Freeze-D: no gradient, R1's included
        p.requires_grad_(False)
    phase.opt.zero_grad(set_to_none=True)
    img, mask = batch
    n = c.batch_gpu
    stats = {}
    for rnd in range(c.num_rounds):
        # Generator noise, style mixing and path-length noise come from torch's global RNG: seed it per round.
        torch.manual_seed(step_seed(c.seed, state.step, 3, phase.tag, info.rank, rnd))
        args = [img[rnd * n:(rnd + 1) * n], mask[rnd * n:(rnd + 1) * n]]
        if phase.z is not None:
            lo = info.rank * (c.batch // info.world_size) + rnd * n  # this rank's slice of the global batch
            args.append(latents[phase.z][lo:lo + n].to(info.device))
        out = getattr(state.loss, phase.method)(*args, gain=phase.interval / c.num_rounds)
        for key, value in out.items():
            stats[key] = stats.get(key, 0) + value.float()
    _reduce_and_check(c, state, info, phase.name, phase.module, stats, tick_stats)
    phase.opt.step()
    phase.module.requires_grad_(False)


def _reduce_and_check(c, state, info, name, module, stats, tick_stats):
    # One flat all-reduce carries the gradients and the loss sums, so every rank sees the same values and
    # takes the same decision on non-finite numbers.
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    keys = sorted(stats)
    flat = torch.cat([p.grad.flatten() for p in params] + [torch.stack([stats[k] for k in keys]).to(params[0].device)])
    distributed.all_reduce_mean_(flat)
    if not bool(torch.isfinite(flat).all()):
        num_stats = len(keys)
        what = "loss" if not bool(torch.isfinite(flat[-num_stats:]).all()) else "gradient"
        raise TrainingDiverged(f"non-finite {what} in phase {name} at kimg {state.cur_nimg / 1000:.3f} "
                               f"(step {state.step}); last good snapshot: {state.last_snapshot or 'none written yet'}")
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    values = (flat[offset:] * info.world_size).tolist()
    for key, value in zip(keys, values):
        total, count = tick_stats.get(key, (0.0, 0))
        tick_stats[key] = (total + value, count + c.batch)


def _to_device(batch, device):
    img, mask = batch
    img = img.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1
    return img, mask.to(device, non_blocking=True)


def training_step(c, state, info, phases, batches, tick_stats):
    """One step: `batches` holds one (uint8 img, mask) batch per entry of BATCH_PARTS, in that order."""
    if len(batches) != len(BATCH_PARTS):
        raise ValueError(f"training_step: expected {len(BATCH_PARTS)} batches ({', '.join(BATCH_PARTS)}), "
                         f"got {len(batches)}")
    data = {part: _to_device(batch, info.device) for part, batch in zip(BATCH_PARTS, batches)}
    latents = step_latents(c, state.step, state.G.z_dim)
    step_stats = {}
    for phase in phases:
        if state.step % phase.interval == 0:
            run_phase(c, state, info, phase, data[phase.data], latents, step_stats)
    for key, (total, count) in step_stats.items():
        tick_total, tick_count = tick_stats.get(key, (0.0, 0))
        tick_stats[key] = (tick_total + total, tick_count + count)
    distributed.average_float_buffers_(state.G)
    state.cur_nimg += c.batch
    state.step += 1
    if state.ada is not None:  # global sums (all-reduced with the gradients): p moves alike on every rank
        state.ada.accumulate(*step_stats.get("signs_real", (0.0, 0)))
        state.ada.after_step(state.step)
    update_ema(state.G_ema, state.G, ema_beta(c.batch, c.ema_kimg, state.cur_nimg, c.ema_rampup))


def check_params_finite(state, where):
    for net_name in ("G", "D", "G_ema"):
        for pname, p in state[net_name].named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise TrainingDiverged(f"non-finite parameter {net_name}.{pname} {where} at kimg "
                                       f"{state.cur_nimg / 1000:.3f}; last good snapshot: "
                                       f"{state.last_snapshot or 'none written yet'}")


# ---------------------------------------------------------------------------------------------------------------
# Image grids, ticks, snapshots, metrics.


def grid_inputs(c, dataset, info):
    """Fixed images, evaluation masks and z for the grids (same for every snapshot of the run)."""
    from data.masks import eval_mask

    n = c.grid[0] * c.grid[1]
    rng = np.random.default_rng(c.seed)
    order = rng.permutation(len(dataset))
    idx = [int(order[i % len(order)]) for i in range(n)]
    img = torch.from_numpy(np.stack([np.asarray(dataset[i]) for i in idx])).to(torch.float32) / 127.5 - 1
    mask = torch.from_numpy(np.stack([eval_mask(c.mask, c.resolution, c.seed, i) for i in range(n)]))[:, None]
    z = torch.randn([n, c.G_kwargs["z_dim"]], generator=torch.Generator().manual_seed(c.seed))
    return img, mask.to(torch.float32), z


def save_grid(images, grid, path):
    """Write [N, C, H, W] images in [-1, 1] as one PNG of grid[0] columns by grid[1] rows."""
    from PIL import Image

    gw, gh = grid
    x = ((images.detach().cpu().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    _n, ch, h, w = x.shape
    x = x.reshape(gh, gw, ch, h, w).transpose(0, 3, 1, 4, 2).reshape(gh * h, gw * w, ch)
    Image.fromarray(x[:, :, 0] if ch == 1 else x).save(path)


@torch.no_grad()
def write_fakes(c, state, info, grid_data, path):
    """The snapshot grid from G_ema with the training truncation (the official loop calls plain Gs.run, whose
    default truncation_psi is 0.5); noise const and dropout off, so that grids compare across snapshots."""
    img, mask, z = grid_data
    out = []
    starts = range(0, img.shape[0], c.batch_gpu)
    # A bar only where it helps: an interactive terminal and more than a handful of batches (e.g. 512 on CPU).
    for i in tqdm(starts, desc="grid", leave=False, disable=len(starts) < 8 or not sys.stderr.isatty()):
        sl = slice(i, i + c.batch_gpu)
        out.append(state.G_ema(img[sl].to(info.device), mask[sl].to(info.device), z=z[sl].to(info.device),
                               truncation_psi=c.truncation_psi, noise_mode="const").cpu())
    save_grid(torch.cat(out), c.grid, path)


def tick_record(c, state, tick):
    now = time.time()
    tick_time = now - tick.start
    tick_kimg = (state.cur_nimg - state.tick_start_nimg) / 1000
    sec_per_kimg = tick_time / max(tick_kimg, 1e-8)
    record = {"tick": state.cur_tick, "kimg": state.cur_nimg / 1000, "timestamp": now,
              "time_s": now - tick.run_start + tick.time_offset, "sec_per_tick": tick_time,
              "sec_per_kimg": sec_per_kimg, "eta_s": max(c.kimg - state.cur_nimg / 1000, 0) * sec_per_kimg}
    for key, (total, count) in sorted(tick.stats.items()):
        record[key] = total / max(count, 1)
    if state.augment_pipe is not None:
        record["augment_p"] = state.augment_pipe.p
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        record["gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    record["cpu_mem_gb"] = psutil.Process().memory_info().rss / 2**30
    return record


def _fmt_time(seconds):
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h" if seconds >= 86400 else \
        f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def tick_line(record):
    parts = [f"tick {record['tick']:<5d}", f"kimg {record['kimg']:<8.3f}", f"time {_fmt_time(record['time_s'])}",
             f"sec/tick {record['sec_per_tick']:<7.2f}", f"sec/kimg {record['sec_per_kimg']:<7.2f}",
             f"eta {_fmt_time(record['eta_s'])}"]
    for key in ("loss_G", "loss_D", "r1_penalty", "pl_penalty", "l1", "augment_p"):
        if key in record:
            parts.append(f"{key} {record[key]:.4f}")
    mem = record.get("gpu_mem_gb", record["cpu_mem_gb"])
    parts.append(f"{'gpu' if 'gpu_mem_gb' in record else 'cpu'}mem {mem:.2f}GB")
    return "  ".join(parts)


def run_metrics(c, state, info, log, snapshot_path, metric_registry):
    """Evaluate c.metrics on G_ema with `metric_registry` (the one launch() was given: metrics.metric_main).

    As calc_metrics.py does by default, and as the official metrics do (is_validation=True: no truncation; the
    global-code dropout always on): no truncation, dropout on, the registry's default batch size (calc_metrics.py
    --batch has the same default; noise and dropout draws are seeded per batch). So a snapshot evaluated here and
    by `calc_metrics.py --network SNAPSHOT --seed SEED` with the same data, mask spec and process count gives the
    same numbers."""
    for metric in c.metrics:
        result = metric_registry.calc_metric(metric, G=state.G_ema, data_path=c.data_val or c.data,
                                             mask_spec=c.mask, device=info.device, seed=c.seed, rank=info.rank,
                                             num_gpus=info.world_size, G_kwargs=dict(dropout=True),
                                             progress=info.is_main, num_workers=c.workers)
        if info.is_main:
            metric_registry.report_metric(result, run_dir=log.run_dir, snapshot_path=snapshot_path)
            values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in result.results.items())
            log.print(f"metric {metric}: {values} ({result.total_time:.1f}s)")


# ---------------------------------------------------------------------------------------------------------------
# Entry point.


class SnapshotWriter:
    """What a snapshot tick writes: the grid of fakes, the snapshot file (its `training_options` the run's record)
    and the metrics, on the fixed grid inputs of the run."""

    def __init__(self, c, run_facts, info, log, grid_data, metric_registry=None):
        self.c, self.run_facts, self.info, self.log = c, run_facts, info, log
        self.grid_data, self.metric_registry = grid_data, metric_registry

    def fakes(self, state, name):
        write_fakes(self.c, state, self.info, self.grid_data, os.path.join(self.log.run_dir, name))

    def write(self, state):
        """Grid, snapshot and metrics at the current kimg (every rank takes part); returns the snapshot path."""
        kimg = state.cur_nimg // 1000
        path = os.path.join(self.log.run_dir, checkpoint.snapshot_name(kimg))
        distributed.check_consistency(state.G, "G")
        distributed.check_consistency(state.D, "D")
        if self.info.is_main:
            self.fakes(state, f"fakes{kimg:06d}.png")
            checkpoint.save_snapshot(path, snapshot_dict(self.c, self.run_facts, state))
        distributed.barrier()
        if self.c.metrics:
            run_metrics(self.c, state, self.info, self.log, path, self.metric_registry)
        return path


def finished(c, state):
    return state.cur_nimg >= c.kimg * 1000


def training_loop(c, run_facts, info, dataset, resume_data=None, metric_registry=None, init_data=None):
    """Train until c.kimg thousand images; returns EasyDict(run_dir, snapshot (last path), state).

    `run_facts` holds the run directory and the snapshot resumed from (options.RunFacts); `metric_registry` (see launch)
    evaluates c.metrics at every snapshot; `init_data` (init_weights.load_init) holds the weights a run started
    with --init begins from."""
    log = RunLog(run_facts.run_dir, info.is_main)
    state = build_state(c, info)
    if init_data is not None:
        init_weights.apply_init(state, init_data, log)
    if resume_data is not None:
        try:
            restore_state(state, resume_data, info)
        except (RuntimeError, ValueError) as err:  # weights or optimizer groups of other networks
            raise checkpoint.CheckpointError(f"--resume {run_facts.resume_path}: its weights do not fit this run's "
                                             f"networks ({checkpoint.state_dict_problem(err)})") from None
        state.last_snapshot = run_facts.resume_path
        log.print(f"resuming from {run_facts.resume_path} at kimg {state.cur_nimg / 1000:.3f} (tick {state.cur_tick})")
    for net in (state.G, state.D, state.G_ema):
        distributed.broadcast_module_(net)
    phases = make_phases(c, state)
    grid_data = grid_inputs(c, dataset, info)
    snapshots = SnapshotWriter(c, run_facts, info, log, grid_data, metric_registry)
    if info.is_main:
        save_grid(grid_data[0] * grid_data[1], c.grid, os.path.join(run_facts.run_dir, "reals.png"))
        if resume_data is None:
            snapshots.fakes(state, "fakes_init.png")
    log.print(f"training for {c.kimg} kimg on {info.world_size} process(es), device {info.device}, "
              f"batch {c.batch} ({c.batch_gpu} per device x {c.num_rounds} round(s))")
    if state.augment_pipe is not None:
        log.print(f"augmentation {c.aug} (bgc) of everything D sees, p {state.augment_pipe.p:.4f}"
                  + (f", target {c.ada_target}, {c.ada_kimg:g} kimg per unit of p" if state.ada else ""))
    if finished(c, state):
        log.print(f"nothing to do: already at kimg {state.cur_nimg / 1000:.3f} >= --kimg {c.kimg}")
        log.close()
        return EasyDict(run_dir=run_facts.run_dir, snapshot=state.last_snapshot, state=state)
    loader = make_loader(c, dataset, info, state.step)
    # The tick's loss sums and its clock; time_offset carries the training time of a resumed run on.
    tick = EasyDict(stats={}, run_start=time.time(), start=time.time(), time_offset=state.time_s)
    try:
        while True:
            batches = [next(loader) for _part in BATCH_PARTS]
            training_step(c, state, info, phases, batches, tick.stats)
            done = finished(c, state)
            if not done and state.cur_tick != 0 and state.cur_nimg < state.tick_start_nimg + c.tick_kimg * 1000:
                continue
            end_of_tick(c, state, log, tick, snapshots)
            if done:
                break
    finally:
        log.close()
    log.print(f"done: {state.cur_nimg / 1000:.3f} kimg; last snapshot {state.last_snapshot}")
    return EasyDict(run_dir=run_facts.run_dir, snapshot=state.last_snapshot, state=state)


def end_of_tick(c, state, log, tick, snapshots):
    """Report the tick and start the next one; on snapshot ticks (every c.snap, and the last) write the snapshot
    with `snapshots` (a SnapshotWriter) and set state.last_snapshot."""
    check_params_finite(state, "after tick")
    record = tick_record(c, state, tick)
    state.time_s = record["time_s"]
    log.print(tick_line(record))
    log.stats(record)
    index = state.cur_tick
    state.cur_tick += 1
    state.tick_start_nimg = state.cur_nimg
    if finished(c, state) or index % c.snap == 0:
        state.last_snapshot = snapshots.write(state)
    tick.stats = {}
    tick.start = time.time()


def drop_stats_after(run_dir, kimg):
    """After a resume in the same run directory, forget the ticks logged after the snapshot (they are redone),
    so stats.jsonl reads like an uninterrupted run."""
    path = os.path.join(run_dir, "stats.jsonl")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    kept = [line for line in lines if json.loads(line).get("kimg", 0) <= kimg + 1e-9]
    if len(kept) != len(lines):
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(kept)


def run(c, run_facts, info, dataset, resume_data=None, metric_registry=None, init_data=None):
    """Write training_options.json (rank 0) and train. Flushes stdout so the last lines are not lost."""
    run_dir = run_facts.run_dir
    if info.is_main:
        os.makedirs(run_dir, exist_ok=True)
        if resume_data is not None:
            drop_stats_after(run_dir, resume_data["progress"]["cur_nimg"] / 1000)
        with open(os.path.join(run_dir, "training_options.json"), "w", encoding="utf-8") as f:
            json.dump(options_record(c, run_facts), f, indent=2, sort_keys=True)
    distributed.barrier()
    try:
        return training_loop(c, run_facts, info, dataset, resume_data, metric_registry, init_data)
    finally:
        sys.stdout.flush()


def launch(opts, dry_run=False, overrides=None, metric_registry=None, network_reader=None):
    """Everything train.py does after parsing: join the process group, open the data, build the frozen config
    and validate it (every user error surfaces here, before training), pick the run directory, then train or
    print.

    `overrides` replaces chosen config fields (tests and benchmarks use it for very small networks).
    `metric_registry` is what --metrics needs: an object with is_valid_metric(name), list_valid_metrics(),
    calc_metric(name, **kwargs) and report_metric(result, ...), i.e. metrics.metric_main, which train.py hands in
    (the metrics package sits above this one and is not imported from here). `network_reader` reads --init's
    file (path -> snapshot dict: inference.loading.read_network_file, which train.py hands in for the same reason).
    Returns None for a dry run, else EasyDict(run_dir, snapshot, state) of this process.
    """
    from torch_utils.misc import resolve_device
    from training import config

    info = distributed.init(resolve_device(opts.get("device", "auto")))
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels
    try:
        config.check_options(opts, world_size=info.world_size, overrides=overrides)  # before reading any file
        dataset = config.open_dataset(opts.get("data"), opts.get("outdir"))

        def configure(options):
            c = config.build_config(options, data_resolution=dataset.resolution, world_size=info.world_size,
                                    overrides=overrides)
            config.validate_inputs(c, metric_registry)
            return c

        c = configure(opts)
        run_dir, resume_path = resolve_run(c, config.run_description(c))
        run_dir, resume_path = distributed.broadcast_object((run_dir, resume_path))
        resume_data = check_resume(c, resume_path) if resume_path else None
        if resume_data is not None:
            freeze_d.check_resume(c.freeze_d, resume_data, resume_path)
            inherited = init_weights.inherited_options(resume_data)
            if inherited:  # a run started with --init resumes as it ran: its source, no EMA ramp-up
                c = configure({**opts, **inherited})
        init_data = None
        if c.init and resume_data is None:
            init_data = init_weights.load_init(c, network_reader)
            # Known once the file is read: recorded with the options, and what a resume of this run inherits.
            c = dataclasses.replace(c, init_source=init_data.source)
        run_facts = RunFacts(device=str(info.device), run_dir=run_dir, resume_path=resume_path)
        if dry_run:
            if info.is_main:
                print(config.to_json(c, run_facts))
            return None
        return run(c, run_facts, info, dataset, resume_data, metric_registry, init_data)
    finally:
        distributed.shutdown()
