"""Training presets (--cfg), building the one frozen TrainingConfig from the command line, a preset and the
dataset's resolution, and the checks that run before any training starts."""

import copy
import dataclasses
import json
import os
import re

from dnnlib import EasyDict, UserError, check_output_path
from training.options import TrainingConfig, field_names, options_record

# A preset sets the options the user leaves unset. The TrainingConfig defaults are the published CoModGAN training
# (training/options.py names the official sources of each); a preset lists only where it differs, its training
# resolution (None = the dataset's) and `batch_gpu`, the per-device cap used when --batch-gpu is not given (memory,
# not maths: gradients are accumulated over rounds; only the per-round noise and style-mixing draws follow the
# split, as in the official loop). G_kwargs / D_kwargs entries update the published ones.
PRESETS = {
    # CPU runs at 32x32 (the demo): 32 feature maps in every layer (a third of 64's cost, as good at equal kimg),
    # 2-layer mapping with z = w = 64, batch 32 in one round (docs/training.md, "The tiny preset"). Gamma 0.2 is
    # the published 10 scaled by (32/512)^2 * (32/8), the resolution/batch scaling of stylegan2-ada's heuristic;
    # the EMA half-life (2.5 kimg) ramps up (half-life <= 0.05 x images seen), so that runs of a few kimg do not
    # average in the random initial weights. Every other choice is the official one, and each is a field of
    # TrainingConfig or a train.py option, so the preset can be tuned.
    "tiny": dict(resolution=32, batch_gpu=32, batch=32, gamma=0.2, ema_kimg=2.5, ema_rampup=0.05, tick_kimg=1.0,
                 snap=10, kimg=100,
                 G_kwargs=dict(z_dim=64, w_dim=64, channel_base=2048, channel_max=32, num_fp16_res=0, conv_clamp=None,
                               mapping_kwargs=dict(num_layers=2)),
                 D_kwargs=dict(channel_base=2048, channel_max=32, num_fp16_res=0, conv_clamp=None)),
    "celebahq256": dict(resolution=256, batch_gpu=16),
    "celebahq512": dict(resolution=512, batch_gpu=8),
    # The published hyperparameters at whatever resolution the dataset has.
    "auto": dict(resolution=None, batch_gpu=8),
}

# Options a preset sets unless the command line gives them (None = not given).
_PRESET_OPTIONS = ("batch", "gamma", "ema_kimg", "lr", "kimg", "tick_kimg", "snap", "mirror", "pl_weight",
                   "l1_weight", "style_mixing_prob", "ema_rampup", "truncation_psi")


def preset_names():
    return list(PRESETS)


def preset_resolution(cfg):
    """The training resolution preset `cfg` fixes, or None when it trains at the dataset's."""
    return PRESETS[cfg]["resolution"]


def build_config(opts, data_resolution=None, world_size=1, overrides=None):
    """The frozen TrainingConfig of a run: CLI options (`opts`, keys as train.py's; None = take the preset), the
    preset --cfg, the dataset's resolution (None = the preset's) and the number of processes.

    `overrides` replaces chosen fields before the derived values are computed (tests and benchmarks pass very small
    G_kwargs / D_kwargs). Every option error is a UserError raised here, before anything is built."""
    values, preset = _resolved(opts, int(world_size), overrides)
    values.update(_at_resolution(values, preset["resolution"], data_resolution))
    return TrainingConfig(**values)


def check_options(opts, world_size=1, overrides=None):
    """Raise the UserError of a bad option before any file is opened: build_config's checks of everything but the
    dataset's resolution."""
    _resolved(opts, int(world_size), overrides)


def _resolved(opts, world_size, overrides):
    """(values of every field but the resolution's, the preset): the options, the preset, then `overrides`, then
    the derived values."""
    opts = EasyDict(opts)
    if opts.get("cfg") not in PRESETS:
        raise UserError(f"--cfg {opts.get('cfg')}: unknown preset; choose one of {', '.join(PRESETS)}")
    preset = _preset(opts.cfg)
    if opts.get("init") and opts.get("resume"):
        raise UserError(f"--init {opts.get('init')} with --resume {opts.get('resume')}: --init starts a new run "
                        f"from a network file (kimg 0, fresh optimizers), --resume continues a run; pass one. A "
                        f"run started with --init resumes with --resume alone")
    values = _chosen(opts, preset)
    unknown = sorted(set(overrides or {}) - set(field_names()))
    if unknown:
        raise ValueError(f"build_config overrides: {', '.join(unknown)} are not TrainingConfig fields")
    values.update(copy.deepcopy(overrides or {}))
    values.update(_derived(values, opts, preset, world_size))
    return values, preset


def _preset(cfg):
    """The TrainingConfig defaults with preset `cfg` applied; 'resolution' may be None, 'batch_gpu' is a cap."""
    p = dataclasses.asdict(TrainingConfig())
    for key, value in copy.deepcopy(PRESETS[cfg]).items():
        if isinstance(value, dict):
            p[key].update(value)
        else:
            p[key] = value
    return p


def _chosen(opts, preset):
    """Each option as the command line gives it, else the preset's; nothing derived yet."""
    values = {key: preset[key] if opts.get(key) is None else opts[key] for key in _PRESET_OPTIONS}
    # Both intervals rescale the optimizers (official lazy regularisation); g_reg_interval also spaces the
    # path-length steps, which run only when pl_weight != 0.
    values.update({key: preset[key] for key in ("betas", "eps", "d_reg_interval", "g_reg_interval", "G_kwargs",
                                                 "D_kwargs")})
    values.update(
        cfg=opts.cfg, data=opts.get("data") or preset["data"], data_val=opts.get("data_val"),
        mask=opts.get("mask") or preset["mask"], outdir=opts.get("outdir") or preset["outdir"],
        resume=opts.get("resume"), init_source=opts.get("init_source"),
        batch_gpu=opts.get("batch_gpu") or None, metrics=_parse_metrics(opts.get("metrics")),
        seed=int(opts.get("seed") or 0), fp32=bool(opts.get("fp32")), freeze_d=int(opts.get("freeze_d") or 0),
        workers=int(preset["workers"] if opts.get("workers") is None else opts["workers"]),
        grid=tuple(opts.get("grid") or preset["grid"]),
    )
    return values


def _derived(values, opts, preset, world_size):
    """Every value the options imply, computed once: batch split, EMA ramp-up, --init's source path, the
    augmentation settings and the network kwargs (_at_resolution adds the resolution). Raises the UserErrors of
    the options they read."""
    batch_gpu = values["batch_gpu"] or _default_batch_gpu(values["batch"], world_size, preset["batch_gpu"])
    num_rounds = _check_numbers(values, batch_gpu, world_size)
    # --init PATH (a new run from a network file; training.init_weights); a resumed --init run gets `init_source`
    # from its snapshot (init_weights.inherited_options) instead.
    init = opts.get("init") or (values["init_source"] or {}).get("path")
    ema_rampup = values["ema_rampup"] or None  # --ema-rampup 0 turns the ramp-up off
    if init and opts.get("ema_rampup") is None:
        # Fine-tuning averages with a constant half-life from the first step: the ramp-up exists to forget random
        # initial weights (stylegan2-ada-pytorch train.py sets ema_rampup = None whenever it resumes a pickle).
        ema_rampup = None
    G_kwargs, D_kwargs = dict(values["G_kwargs"]), dict(values["D_kwargs"])
    if values["fp32"]:
        for kw in (G_kwargs, D_kwargs):
            kw.update(num_fp16_res=0, conv_clamp=None)
    G_kwargs.update(_modulation(G_kwargs, opts, values["pl_weight"]))
    return dict(world_size=world_size, batch_gpu=batch_gpu, num_rounds=num_rounds, init=init,
                ema_rampup=ema_rampup, G_kwargs=G_kwargs, D_kwargs=D_kwargs,
                **_augment_options(opts, from_weights=bool(init)))


def _modulation(G_kwargs, opts, pl_weight):
    """style_mod/cond_mod for G_kwargs from --style-mod/--cond-mod (official run_training.py
    --disable-style-mod/--disable-cond-mod), always written out so that training_options.json and a resume check
    name the variant."""
    mod = {}
    for key in ("style_mod", "cond_mod"):
        value = opts.get(key)
        mod[key] = bool(G_kwargs.get(key, True) if value is None else value)
    if not (mod["style_mod"] or mod["cond_mod"]):
        raise UserError("--no-style-mod with --no-cond-mod: every modulated layer needs w (--style-mod) or the "
                        "global code (--cond-mod); keep at least one on (docs/ablations.md)")
    if not mod["style_mod"] and pl_weight != 0:
        raise UserError(f"--pl-weight {pl_weight:g} with --no-style-mod: path length regularisation acts on the "
                        f"w -> image map, and without style modulation w does not reach the image; use "
                        f"--pl-weight 0")
    return mod


# Augmentation of what D sees (training/augment.py). The published training has none (noaug); ADA's constants are
# stylegan2-ada's (train.py, training_loop.py): target 0.6, p moving by 1 in 500 kimg (100 when fine-tuning from
# weights), an update every 4 steps.
AUG_MODES = ("noaug", "ada", "fixed")
ADA_TARGET = 0.6
ADA_KIMG, ADA_KIMG_FROM_WEIGHTS = 500.0, 100.0
ADA_INTERVAL = 4


def _augment_options(opts, from_weights):
    """aug, aug_p, ada_target, ada_kimg, ada_interval from --aug, --aug-p, --ada-target, --ada-kimg;
    `from_weights` (--init): fine-tuning adapts p faster."""
    aug = opts.get("aug") or "noaug"
    if aug not in AUG_MODES:
        raise UserError(f"--aug {aug}: choose one of {', '.join(AUG_MODES)}")
    p, target, kimg = opts.get("aug_p"), opts.get("ada_target"), opts.get("ada_kimg")
    if aug == "noaug" and p is not None:
        raise UserError(f"--aug-p {p}: there is no augmentation to set with --aug noaug; add --aug ada or fixed")
    if aug == "fixed" and p is None:
        raise UserError("--aug fixed needs --aug-p P, the fixed augmentation probability")
    if aug != "ada" and (target is not None or kimg is not None):
        name = "--ada-target" if target is not None else "--ada-kimg"
        raise UserError(f"{name}: tunes the adaptive p of --aug ada only (this run has --aug {aug})")
    if p is not None and not 0 <= p <= 1:
        raise UserError(f"--aug-p {p}: must be in [0, 1]")
    if kimg is not None and kimg <= 0:
        raise UserError(f"--ada-kimg {kimg}: must be positive")
    if aug != "ada":
        return dict(aug=aug, aug_p=float(p or 0.0), ada_target=None, ada_kimg=None, ada_interval=None)
    return dict(aug=aug, aug_p=float(p or 0.0), ada_target=float(ADA_TARGET if target is None else target),
                ada_kimg=float(kimg if kimg is not None else ADA_KIMG_FROM_WEIGHTS if from_weights else ADA_KIMG),
                ada_interval=ADA_INTERVAL)


def _default_batch_gpu(batch, world_size, cap):
    """Without --batch-gpu: the largest per-device round <= the preset's cap that divides each process's share of
    the batch (--batch 24 on celebahq256's cap 16 runs 2 rounds of 12, not an error about a --batch-gpu the user
    never gave). A batch that does not split over the processes is left for _check_numbers to name."""
    share = batch // max(world_size, 1)
    if share < 1 or batch % max(world_size, 1):
        return max(1, min(share, cap))
    return max(d for d in range(1, min(share, cap) + 1) if share % d == 0)


def _parse_metrics(text):
    if text is None or str(text).strip().lower() in ("", "none"):
        return ()
    return tuple(name.strip() for name in str(text).split(",") if name.strip())


def _check_numbers(values, batch_gpu, world_size):
    """UserError unless the batch splits into whole rounds and the lengths are positive; returns the rounds."""
    batch = values["batch"]
    if batch < 1 or batch_gpu < 1:
        raise UserError(f"--batch {batch} / --batch-gpu {batch_gpu}: must be positive")
    per_round = batch_gpu * world_size
    if batch % per_round != 0:
        raise UserError(f"--batch {batch} must be a multiple of --batch-gpu {batch_gpu} x {world_size} "
                        f"process(es) = {per_round}")
    if values["kimg"] <= 0 or values["tick_kimg"] <= 0 or values["snap"] < 1:
        raise UserError(f"--kimg {values['kimg']}, --tick-kimg {values['tick_kimg']}, --snap {values['snap']}: "
                        f"must all be positive")
    return batch // per_round


def _at_resolution(values, preset_res, data_resolution):
    """resolution, and the network kwargs with it: the dataset's resolution; a preset with a fixed one must match."""
    resolution = _training_resolution(preset_res, data_resolution, values["data"], values["cfg"])
    return dict(resolution=resolution, G_kwargs=dict(values["G_kwargs"], img_resolution=resolution),
                D_kwargs=dict(values["D_kwargs"], img_resolution=resolution))


def _training_resolution(preset_res, data_resolution, data, cfg):
    if data_resolution is None:
        if preset_res is None:
            raise UserError(f"--cfg {cfg}: trains at the resolution of --data's images; give the data")
        data_resolution = preset_res
    if preset_res is not None and preset_res != data_resolution:
        raise UserError(f"--data {data}: images are {data_resolution}x{data_resolution} but --cfg {cfg} "
                        f"trains at {preset_res}x{preset_res}; resize the dataset (dataset_tool.py) "
                        f"or use --cfg auto")
    from training.networks import MAX_RESOLUTION, MIN_RESOLUTION, NetworkInputError, check_resolution

    try:
        check_resolution(int(data_resolution))
    except NetworkInputError:
        raise UserError(f"--data {data}: images are {data_resolution}x{data_resolution}; the networks train at "
                        f"a power of two from {MIN_RESOLUTION} to {MAX_RESOLUTION} (resize with dataset_tool.py)"
                        ) from None
    return int(data_resolution)


def open_dataset(data, outdir):
    """Check --data and --outdir and open the training images (their resolution decides the config's)."""
    from data.dataset import ImageDataset

    if not data:
        raise UserError("--data: a dataset zip or folder is required")
    check_output_path(outdir, "--outdir")
    dataset = ImageDataset(data)
    if len(dataset) == 0:
        raise UserError(f"--data {data}: the dataset holds no images")
    return dataset


def validate_inputs(c, metric_registry=None):
    """The checks that need more than the options: --data-val's images, the mask spec, --freeze-d against D and
    metric names against `metric_registry` (see training_loop.launch); every user error, before training."""
    from data.dataset import ImageDataset
    from data.masks import make_mask_generator

    if c.data_val:
        val = ImageDataset(c.data_val)
        if len(val) == 0 or val.resolution != c.resolution:
            raise UserError(f"--data-val {c.data_val}: needs images at {c.resolution}x{c.resolution} "
                            f"(found {len(val)} images at {val.resolution})")
    make_mask_generator(c.mask, c.resolution)
    if c.freeze_d:
        from training.freeze_d import check_count

        check_count(c.freeze_d, c.D_kwargs)
    if c.metrics:
        _check_metric_names(c.metrics, metric_registry)


def _check_metric_names(names, registry):
    if registry is None:
        raise UserError(f"--metrics {','.join(names)}: no metric registry was given to the training loop; "
                        f"use --metrics none")
    bad = [name for name in names if not registry.is_valid_metric(name)]
    if bad:
        raise UserError(f"--metrics: unknown metric(s) {', '.join(bad)}; valid: "
                        f"{', '.join(registry.list_valid_metrics())} or none")


def run_description(c):
    name = os.path.splitext(os.path.basename(os.path.normpath(c.data)))[0]
    mask = re.sub(r"[^A-Za-z0-9.=-]+", "_", c.mask.split(":")[0] if c.mask.startswith("nvidia") else c.mask)
    ablation = "".join(tag for key, tag in (("style_mod", "-nostylemod"), ("cond_mod", "-nocondmod"))
                       if not c.G_kwargs.get(key, True))
    aug = "" if c.aug == "noaug" else f"-{c.aug}"
    return f"{c.cfg}-{name}-{mask}-batch{c.batch}-gamma{c.gamma:g}{ablation}{aug}"


def to_json(c, run_facts=None):
    """--dry-run's print-out: the training_options.json record of `c` and `run_facts` (options.RunFacts)."""
    return json.dumps(options_record(c, run_facts), indent=2, sort_keys=True)
