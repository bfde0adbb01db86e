"""The training configuration: every option of a run with its type, default and meaning, in one frozen object.

The defaults are the published CoModGAN training (FFHQ/Places2, reused for CelebA-HQ) as the official TensorFlow
code runs it (zsyzzsoft/co-mod-gan run_training.py, training/training_loop.py, training/co_mod_gan.py G_main;
docs/training.md "Training recipe"), at 512x512 on one process. training.config builds a TrainingConfig from the
command line and a preset (--cfg) once, derived values included; nothing changes it afterwards.
"""

import dataclasses
import json


def _published_G():
    return dict(z_dim=512, w_dim=512, img_resolution=512, img_channels=3, channel_base=16384, channel_max=512,
                num_fp16_res=4, conv_clamp=256, mapping_kwargs=dict(num_layers=8), style_mod=True, cond_mod=True)


def _published_D():
    return dict(img_resolution=512, img_channels=3, channel_base=16384, channel_max=512, num_fp16_res=4,
                conv_clamp=256)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """One training run's options (train.py's, resolved against the preset) and the values derived from them.

    Frozen: assigning a field raises dataclasses.FrozenInstanceError. G_kwargs and D_kwargs are plain dicts of
    training.networks.Generator / Discriminator arguments (JSON-able, written into every snapshot); they are built
    with the config and never changed afterwards.
    """

    # Data, output and run control.
    cfg: str = "auto"  # Preset the unset options came from (training.config.PRESETS).
    data: str = ""  # Training images: a stylegan2-ada zip or a folder.
    data_val: str | None = None  # Images for the metrics; None = data.
    mask: str = "free-form"  # Training mask spec (data.masks): center, free-form, nvidia:PATH, mixed:...
    outdir: str = "runs"  # Where the run directories NNNNN-<description>/ are created.
    resume: str | None = None  # --resume as given: a snapshot path, 'latest', 'auto' or None.
    init: str | None = None  # Network file a new run starts from (--init); a resumed --init run: its source's path.
    init_source: dict | None = None  # Where --init's weights came from (path, sha256, format, D): init_weights.
    seed: int = 0  # Seed of the initial weights, data order, masks and noise.
    workers: int = 2  # DataLoader worker processes per training process.
    metrics: tuple[str, ...] = ()  # Metrics (metrics.metric_main names) evaluated at every snapshot.
    grid: tuple[int, int] = (8, 4)  # Snapshot image grid: columns, rows.

    # Length and reporting.
    kimg: float = 25000.0  # Train until this many thousand images were shown (official FFHQ length).
    tick_kimg: float = 4.0  # kimg per progress tick (a log line and a stats.jsonl record).
    snap: int = 50  # Ticks between snapshots, grids and metrics.

    # Resolution, batch and processes (derived: resolution, batch_gpu when not given, world_size, num_rounds).
    resolution: int = 512  # Training resolution: the dataset's; a preset with a fixed one must match it.
    batch: int = 32  # Total batch over all processes (official: 4 per GPU on 8 GPUs).
    batch_gpu: int = 8  # Samples per device per round: --batch-gpu, else the largest that splits <= preset's cap.
    world_size: int = 1  # Training processes (torchrun's WORLD_SIZE).
    num_rounds: int = 4  # Rounds per step whose gradients are accumulated: batch / (batch_gpu * world_size).
    fp32: bool = False  # No float16 layers (G/D num_fp16_res 0, conv_clamp None); float16 runs on CUDA only.
    mirror: bool = True  # Random horizontal flips (our choice: the official run_training.py default is off).

    # Optimizers: Adam for G and D; lazy regularisation rescales lr and betas of both by I/(I+1) (official
    # training_loop.py "Setup optimizers"), G with g_reg_interval although CoModGAN has no G regulariser.
    lr: float = 0.002  # Adam learning rate of G and D before the rescaling.
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas before the rescaling.
    eps: float = 1e-8  # Adam epsilon.
    g_reg_interval: int = 4  # G steps per path-length step; also rescales G's optimizer.
    d_reg_interval: int = 16  # D steps per R1 step; also rescales D's optimizer.

    # Loss (non-saturating logistic G, logistic D).
    gamma: float = 10.0  # R1 weight.
    pl_weight: float = 0.0  # Path length regularisation weight (official CoModGAN: none).
    l1_weight: float = 0.0  # L1 reconstruction weight (official: 0).
    style_mixing_prob: float = 0.5  # Probability of mixing two w in a training forward.
    truncation_psi: float = 0.5  # Truncation of every training forward and grid (official G_main); metrics: none.

    # Generator EMA (official Gs_beta = 0.5 ** (batch / (ema_kimg * 1000)), constant from the first step).
    ema_kimg: float = 10.0  # Half-life of the G average in kimg.
    ema_rampup: float | None = None  # Half-life <= this x images seen; None = constant (official; --init's default).

    # Discriminator augmentation (training.augment) and Freeze-D (training.freeze_d).
    aug: str = "noaug"  # noaug (published), ada (p tuned to D's overfitting) or fixed (p = aug_p).
    aug_p: float = 0.0  # Augmentation probability: fixed, or ADA's starting value.
    ada_target: float | None = None  # ADA: target mean sign of D(real) (0.6); None without ADA.
    ada_kimg: float | None = None  # ADA: kimg for p to move by 1 (500; 100 with --init); None without ADA.
    ada_interval: int | None = None  # ADA: steps between p updates (4); None without ADA.
    freeze_d: int = 0  # D's first N layers from the input side take no gradient (0 = none).

    # Networks: training.networks.Generator / Discriminator keyword arguments (the published widths; img_resolution
    # = resolution; style_mod/cond_mod from --style-mod/--cond-mod; fp32 zeroes num_fp16_res and conv_clamp).
    G_kwargs: dict = dataclasses.field(default_factory=_published_G)  # Generator(**G_kwargs).
    D_kwargs: dict = dataclasses.field(default_factory=_published_D)  # Discriminator(**D_kwargs).

    def __post_init__(self):
        # Sequences are stored as tuples so that the frozen object has no list to append to; the JSON record
        # writes them as lists.
        for name in ("metrics", "grid", "betas"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.batch_gpu * self.world_size * self.num_rounds != self.batch:
            raise ValueError(f"TrainingConfig: batch {self.batch} != batch_gpu {self.batch_gpu} x world_size "
                             f"{self.world_size} x num_rounds {self.num_rounds} (build it with "
                             f"training.config.build_config)")


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What launch decides for one run besides its options; recorded beside them, never an option."""

    device: str  # The device this process trains on (--device auto resolved), e.g. 'cuda:0' or 'cpu'.
    run_dir: str  # The run directory (new, or the one a --resume latest/auto continues).
    resume_path: str | None = None  # The snapshot the run resumes from; None for a new run.


def field_names(cls=TrainingConfig):
    return [f.name for f in dataclasses.fields(cls)]


def options_record(c, run_facts=None):
    """The JSON-able dict written as training_options.json, into every snapshot and by --dry-run: every field of
    `c` plus those of `run_facts` (device, run_dir, resume_path)."""
    record = dataclasses.asdict(c)
    if run_facts is not None:
        record.update(dataclasses.asdict(run_facts))
    return json.loads(json.dumps(record))
