"""Training presets (--cfg), resolution of user options into one JSON-able config, and the checks that run
before any training starts."""

import copy
import json
import os
import re

from dnnlib import EasyDict, UserError, check_output_path

# Published CoModGAN training (FFHQ/Places2, reused for CelebA-HQ), as the official TF code runs it
# (run_training.py, training/training_loop.py, training/co_mod_gan.py G_main; docs/training.md "Training recipe"):
# - Adam lr 0.002, betas (0, 0.99), eps 1e-8, total batch 32; lazy regularisation rescales lr and betas of BOTH
#   optimizers (training_loop "Setup optimizers"): G with g_reg_interval 4 although CoModGAN has no G
#   regulariser, D with d_reg_interval 16 (R1 gamma 10 every 16 D steps);
# - G EMA half-life 10 kimg, constant from the first step (Gs_beta, no ramp-up): ema_rampup None;
# - truncation psi 0.5 in every training forward, G and D phases, after style mixing (G_main's default
#   truncation_psi, not reset when is_training); the snapshot grids use it too; metrics use none;
# - style mixing 0.5, w average beta 0.995 updated in every training forward, 8-layer mapping with z = w = 512,
#   no path length term, no L1; mirror flips (our choice: the official run_training.py default is off).
_PUBLISHED = dict(
    batch=32, gamma=10.0, ema_kimg=10.0, ema_rampup=None, lr=0.002, betas=(0.0, 0.99), eps=1e-8,
    d_reg_interval=16, g_reg_interval=4, style_mixing_prob=0.5, truncation_psi=0.5, pl_weight=0.0, l1_weight=0.0,
    mirror=True, tick_kimg=4.0, snap=50, kimg=25000,
    G=dict(z_dim=512, w_dim=512, channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256,
           mapping_kwargs=dict(num_layers=8)),
    D=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256),
)


def _preset(resolution, batch_gpu, **overrides):
    p = copy.deepcopy(_PUBLISHED)
    for key, value in overrides.items():
        if isinstance(value, dict):
            p[key].update(value)
        else:
            p[key] = value
    p.update(resolution=resolution, batch_gpu=batch_gpu)
    return p


# batch_gpu is the per-device cap used when --batch-gpu is not given (memory, not maths: gradients are accumulated
# over rounds; only the per-round noise and style-mixing draws follow the split, as in the official loop).
PRESETS = {
    # CPU runs at 32x32 (the demo): 32 feature maps in every layer (a third of 64's cost, as good at equal kimg),
    # 2-layer mapping with z = w = 64, batch 32 in one round (docs/training.md, "The tiny preset"). Gamma 0.2 is
    # the published 10 scaled by (32/512)^2 * (32/8), the resolution/batch scaling of stylegan2-ada's heuristic;
    # the EMA half-life (2.5 kimg) ramps up (half-life <= 0.05 x images seen), so that runs of a few kimg do not
    # average in the random initial weights. Every other choice is the official one, and each is a key here or a
    # train.py option, so the preset can be tuned.
    "tiny": _preset(32, 32, batch=32, gamma=0.2, ema_kimg=2.5, ema_rampup=0.05, tick_kimg=1.0, snap=10, kimg=100,
                    G=dict(z_dim=64, w_dim=64, channel_base=2048, channel_max=32, num_fp16_res=0, conv_clamp=None,
                           mapping_kwargs=dict(num_layers=2)),
                    D=dict(channel_base=2048, channel_max=32, num_fp16_res=0, conv_clamp=None)),
    "celebahq256": _preset(256, 16),
    "celebahq512": _preset(512, 8),
    # The published hyperparameters at whatever resolution the dataset has.
    "auto": _preset(None, 8),
}


def preset_names():
    return list(PRESETS)


def build_config(opts, world_size=1, overrides=None):
    """Merge CLI options (None = take the preset) into a resolved EasyDict. `opts` keys mirror the CLI;
    `overrides` then replaces resolved entries (e.g. G_kwargs for very small test networks)."""
    opts = EasyDict(opts)
    if opts.cfg not in PRESETS:
        raise UserError(f"--cfg {opts.cfg}: unknown preset; choose one of {', '.join(PRESETS)}")
    p = copy.deepcopy(PRESETS[opts.cfg])
    c = EasyDict(cfg=opts.cfg, data=opts.data, data_val=opts.get("data_val"), mask=opts.mask, outdir=opts.outdir)
    c.resolution = p["resolution"]
    for key in ("batch", "gamma", "ema_kimg", "lr", "kimg", "tick_kimg", "snap", "mirror", "pl_weight",
                "l1_weight", "style_mixing_prob", "ema_rampup", "truncation_psi"):
        value = opts.get(key)
        c[key] = p[key] if value is None else value
    if not c.ema_rampup:  # --ema-rampup 0 turns the ramp-up off
        c.ema_rampup = None
    _init_options(c, opts)
    c.betas, c.eps = list(p["betas"]), p["eps"]
    # Both intervals rescale the optimizers (official lazy regularisation); g_reg_interval also spaces the
    # path-length steps, which run only when pl_weight != 0.
    c.d_reg_interval = p["d_reg_interval"]
    c.g_reg_interval = p["g_reg_interval"]
    c.world_size = int(world_size)
    c.batch_gpu = opts.get("batch_gpu") or _default_batch_gpu(c.batch, c.world_size, p["batch_gpu"])
    c.metrics = _parse_metrics(opts.get("metrics"))
    c.resume = opts.get("resume")
    c.seed = int(opts.get("seed") or 0)
    c.fp32 = bool(opts.get("fp32"))
    c.workers = int(opts.get("workers", 2))
    c.device = opts.get("device", "auto")
    c.grid = list(opts.get("grid") or (8, 4))
    c.update(_augment_options(opts, c))
    c.G_kwargs = dict(p["G"], img_channels=3)
    c.D_kwargs = dict(p["D"], img_channels=3)
    c.update(copy.deepcopy(overrides or {}))
    if c.fp32:
        for kw in (c.G_kwargs, c.D_kwargs):
            kw.update(num_fp16_res=0, conv_clamp=None)
    _set_modulation(c, opts)
    _check_numbers(c)
    return c


def _init_options(c, opts):
    """--init PATH (a new run from a network file; training.init_weights) and --freeze-d N (training.freeze_d).
    A resumed --init run gets `init_source` from its snapshot (init_weights.inherited_options) instead of --init."""
    if opts.get("init") and opts.get("resume"):
        raise UserError(f"--init {opts.get('init')} with --resume {opts.get('resume')}: --init starts a new run "
                        f"from a network file (kimg 0, fresh optimizers), --resume continues a run; pass one. A "
                        f"run started with --init resumes with --resume alone")
    c.init_source = opts.get("init_source")  # path, sha256, format; filled in when the file is read
    c.init = opts.get("init") or (c.init_source or {}).get("path")
    if c.init and opts.get("ema_rampup") is None:
        # Fine-tuning averages with a constant half-life from the first step: the ramp-up exists to forget random
        # initial weights (stylegan2-ada-pytorch train.py sets ema_rampup = None whenever it resumes a pickle).
        c.ema_rampup = None
    c.freeze_d = int(opts.get("freeze_d") or 0)


def _set_modulation(c, opts):
    """--style-mod/--cond-mod (official run_training.py --disable-style-mod/--disable-cond-mod) into G_kwargs,
    always written out so that training_options.json and a resume check name the variant."""
    for key in ("style_mod", "cond_mod"):
        value = opts.get(key)
        c.G_kwargs[key] = bool(c.G_kwargs.get(key, True) if value is None else value)
    if not (c.G_kwargs["style_mod"] or c.G_kwargs["cond_mod"]):
        raise UserError("--no-style-mod with --no-cond-mod: every modulated layer needs w (--style-mod) or the "
                        "global code (--cond-mod); keep at least one on (docs/ablations.md)")
    if not c.G_kwargs["style_mod"] and c.pl_weight != 0:
        raise UserError(f"--pl-weight {c.pl_weight:g} with --no-style-mod: path length regularisation acts on the "
                        f"w -> image map, and without style modulation w does not reach the image; use "
                        f"--pl-weight 0")


# Augmentation of what D sees (training/augment.py). The published training has none (noaug); ADA's constants are
# stylegan2-ada's (train.py, training_loop.py): target 0.6, p moving by 1 in 500 kimg (100 when fine-tuning from
# weights), an update every 4 steps.
AUG_MODES = ("noaug", "ada", "fixed")
ADA_TARGET = 0.6
ADA_KIMG, ADA_KIMG_FROM_WEIGHTS = 500.0, 100.0
ADA_INTERVAL = 4


def _augment_options(opts, c):
    """aug, aug_p, ada_target, ada_kimg, ada_interval from --aug, --aug-p, --ada-target, --ada-kimg."""
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
    from_weights = bool(c.get("init") or opts.get("init"))  # --init: fine-tuning adapts p faster
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
        return []
    return [name.strip() for name in str(text).split(",") if name.strip()]


def _check_numbers(c):
    if c.batch < 1 or c.batch_gpu < 1:
        raise UserError(f"--batch {c.batch} / --batch-gpu {c.batch_gpu}: must be positive")
    per_round = c.batch_gpu * c.world_size
    if c.batch % per_round != 0:
        raise UserError(f"--batch {c.batch} must be a multiple of --batch-gpu {c.batch_gpu} x {c.world_size} "
                        f"process(es) = {per_round}")
    c.num_rounds = c.batch // per_round
    if c.kimg <= 0 or c.tick_kimg <= 0 or c.snap < 1:
        raise UserError(f"--kimg {c.kimg}, --tick-kimg {c.tick_kimg}, --snap {c.snap}: must all be positive")


def set_resolution(c, data_resolution):
    """Fix the training resolution from the dataset; a preset with a fixed resolution must match it."""
    if c.resolution is not None and c.resolution != data_resolution:
        raise UserError(f"--data {c.data}: images are {data_resolution}x{data_resolution} but --cfg {c.cfg} "
                        f"trains at {c.resolution}x{c.resolution}; resize the dataset (dataset_tool.py) "
                        f"or use --cfg auto")
    from training.networks import MAX_RESOLUTION, MIN_RESOLUTION, NetworkInputError, check_resolution

    try:
        check_resolution(int(data_resolution))
    except NetworkInputError:
        raise UserError(f"--data {c.data}: images are {data_resolution}x{data_resolution}; the networks train at "
                        f"a power of two from {MIN_RESOLUTION} to {MAX_RESOLUTION} (resize with dataset_tool.py)"
                        ) from None
    c.resolution = int(data_resolution)
    c.G_kwargs["img_resolution"] = c.resolution
    c.D_kwargs["img_resolution"] = c.resolution


def validate_inputs(c, metric_registry=None):
    """Open the dataset(s), build the mask generator and check metric names against `metric_registry` (see
    training_loop.launch): every user error, before training."""
    from data.dataset import ImageDataset
    from data.masks import make_mask_generator

    if not c.data:
        raise UserError("--data: a dataset zip or folder is required")
    check_output_path(c.outdir, "--outdir")
    dataset = ImageDataset(c.data)
    if len(dataset) == 0:
        raise UserError(f"--data {c.data}: the dataset holds no images")
    set_resolution(c, dataset.resolution)
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
    return dataset


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
    aug = "" if c.get("aug", "noaug") == "noaug" else f"-{c.aug}"
    return f"{c.cfg}-{name}-{mask}-batch{c.batch}-gamma{c.gamma:g}{ablation}{aug}"


def to_json(c):
    return json.dumps(c, indent=2, sort_keys=True)
