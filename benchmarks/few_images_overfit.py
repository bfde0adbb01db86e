"""The few-image experiment: does mask-consistent ADA keep D from overfitting 20 faces, and what does it do to
the inpainting? Trains `--cfg tiny` on 20 of scikit-image's lfw faces with --aug noaug and with --aug ada (both
arms side by side, one torch thread each, same seed, masks, batch and length), then prints:

- over time (every snapshot): D's mean logit on the 20 training faces minus its mean logit on 20 held-out faces
  (80-99) under the same masks, center and free-form (a growing gap = D memorises its training set), the mean
  sign of D(real) during training and ADA's p;
- at the end: held-out center and free-form L1 in the hole, PSNR and SSIM (metrics/pixel_metrics.py) over several
  seeds, and the seeds' diversity (demo_lib/report.py).

Run from the repository root (about 20 min per 60 kimg and arm on 2 free cores; --kimg sets the length):

    python -m benchmarks.few_images_overfit --outdir results/few-images --kimg 70

Faces 0-19 train and 80-99 are held out, upscaled 25x25 -> 32x32 bicubic, gray as RGB. Training masks are mixed
free-form/center, batch 32. `--ada-kimg` is ADA's speed (kimg for p to move by 1): stylegan2-ada's 500 suits runs
of thousands of kimg; in a run of tens of kimg p could not move by more than a few hundredths, so the default
here is 10. `--eval-only` re-reads finished runs.
"""

import glob
import io
import json
import os
import platform
import subprocess
import sys
import time
import zipfile

import click
import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from data.masks import eval_mask  # noqa: E402
from demo_lib.faces import load_faces  # noqa: E402
from demo_lib.report import seed_diversity  # noqa: E402
from inference.loading import load_generator  # noqa: E402
from metrics.pixel_metrics import ROW_FIELDS, pixel_row  # noqa: E402
from training import checkpoint  # noqa: E402
from training.networks import Discriminator  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_FACES, HELD_FACES = range(0, 20), range(80, 100)
RESOLUTION = 32
TRAIN_MASK = "mixed:free-form=0.5,center=0.5"
EVAL_MASKS = ("center", "free-form")
ARMS = ("noaug", "ada")


def write_faces_zip(path, indices):
    """A dataset zip of lfw faces `indices`, 25x25 gray -> 32x32 bicubic RGB."""
    faces = load_faces()
    with zipfile.ZipFile(path, "w") as zf:
        for k, i in enumerate(indices):
            img = PIL.Image.fromarray(faces[i], mode="L").resize((RESOLUTION, RESOLUTION), PIL.Image.BICUBIC)
            img = img.convert("RGB")
            buf = io.BytesIO()
            img.save(buf, format="png")
            zf.writestr(f"00000/img{k:08d}.png", buf.getvalue())
    return path


def face_tensor(indices):
    """float [N, 3, 32, 32] in [-1, 1], as the training loop sees the zip's images."""
    faces = load_faces()
    imgs = [np.asarray(PIL.Image.fromarray(faces[i], mode="L").resize((RESOLUTION, RESOLUTION), PIL.Image.BICUBIC)
                       .convert("RGB")) for i in indices]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1


def masks_for(spec, count, seed):
    return torch.from_numpy(np.stack([eval_mask(spec, RESOLUTION, seed, i) for i in range(count)]))[:, None]


def train_arms(outdir, data, kimg, seed, ada_kimg, snap_ticks):
    """Start both arms as train.py processes (one torch thread each), wait, return {arm: run_dir}."""
    procs = {}
    for arm in ARMS:
        args = [sys.executable, os.path.join(REPO, "train.py"), "--outdir", os.path.join(outdir, arm), "--data", data,
                "--cfg", "tiny", "--mask", TRAIN_MASK, "--batch", "32", "--kimg", str(kimg), "--snap",
                str(snap_ticks), "--seed", str(seed), "--workers", "0", "--device", "cpu", "--aug", arm]
        if arm == "ada":
            args += ["--ada-kimg", str(ada_kimg)]
        log = open(os.path.join(outdir, f"{arm}.log"), "w", encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs[arm] = (subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env), log, args)
        print(f"[{arm}] {' '.join(args[1:])}", flush=True)
    for arm, (proc, log, _args) in procs.items():
        if proc.wait() != 0:
            raise click.ClickException(f"{arm} arm failed (exit {proc.returncode}); see {log.name}")
        log.close()
    return {arm: run_dir_of(outdir, arm) for arm in ARMS}


def run_dir_of(outdir, arm):
    runs = sorted(glob.glob(os.path.join(outdir, arm, "0*-*")))
    if not runs:
        raise click.ClickException(f"no run directory under {os.path.join(outdir, arm)}")
    return runs[-1]


@torch.no_grad()
def d_logit_gaps(snapshot, train_img, held_img, masks):
    """{spec: mean D(train faces) - mean D(held-out faces)}, each spec's masks the same for both sets."""
    data = checkpoint.load_snapshot(snapshot)
    D = Discriminator(**data["D_kwargs"]).eval()
    D.load_state_dict(data["D"])
    return {spec: float(D(train_img, m).mean() - D(held_img, m).mean()) for spec, m in masks.items()}


@torch.no_grad()
def inpainting_scores(snapshot, held_img, masks, seeds):
    """{spec: {l1_hole, psnr, ssim, diversity}} of G_ema on the held-out faces over `seeds` (dropout on and
    random noise, as calc_metrics.py evaluates)."""
    G = load_generator(snapshot, "cpu")
    real = ((held_img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    out = {}
    for spec, mask in masks.items():
        rows, per_face = [], [{"ours": [], "mask": mask[i, 0].numpy()} for i in range(len(held_img))]
        for seed in seeds:
            torch.manual_seed(seed)
            z = torch.randn([len(held_img), G.z_dim])
            fake = G(held_img, mask, z=z, noise_mode="random", dropout=True)
            fake = ((fake + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            for i in range(len(held_img)):
                rows.append(pixel_row(real[i], fake[i], mask[i, 0].numpy()))
                per_face[i]["ours"].append(fake[i].transpose(1, 2, 0))
        rows = np.asarray(rows)
        scores = {k: float(np.nanmean(rows[:, ROW_FIELDS.index(k)])) for k in ("l1_hole", "psnr", "ssim")}
        scores["diversity"] = seed_diversity(per_face)
        out[spec] = scores
    return out


def read_stats(run_dir):
    """{kimg rounded down, as the snapshots are named: record} from the run's stats.jsonl."""
    with open(os.path.join(run_dir, "stats.jsonl"), encoding="utf-8") as f:
        return {int(r["kimg"]): r for r in (json.loads(line) for line in f if line.strip())}


def mean_signs(stats, lo, hi):
    """Mean of the ticks' mean sign(D(real)) for kimg in (lo, hi]."""
    values = [r["signs_real"] for k, r in stats.items() if lo < k <= hi and "signs_real" in r]
    return float(np.mean(values)) if values else float("nan")


def report(runs, seed, num_seeds, kimg, ada_kimg, minutes):
    train_img, held_img = face_tensor(TRAIN_FACES), face_tensor(HELD_FACES)
    masks = {spec: masks_for(spec, len(HELD_FACES), seed) for spec in EVAL_MASKS}
    print(f"\nfew-image overfitting: tiny, 20 lfw faces (0-19), held out 80-99, 32x32, masks {TRAIN_MASK}, batch 32, "
          f"{kimg:g} kimg, seed {seed}; ADA target 0.6, --ada-kimg {ada_kimg:g}")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, one torch thread per "
          f"arm; wall minutes " + ", ".join(f"{arm} {m:.0f}" for arm, m in minutes.items() if m))
    stats = {arm: read_stats(run_dir) for arm, run_dir in runs.items()}
    snaps = {arm: dict(checkpoint.list_snapshots(run_dir)) for arm, run_dir in runs.items()}
    kimgs = sorted(set.intersection(*(set(s) for s in snaps.values())))
    print("\nD(train faces) - D(held-out faces), mean logit, same masks; sign = mean sign(D(real)) in training "
          "since the previous row; p = ADA's p")
    print(f"{'kimg':>5} | {'noaug ctr':>9} {'noaug ff':>8} {'sign':>6} | {'ada ctr':>8} {'ada ff':>7} {'sign':>6} "
          f"{'p':>6}")
    prev = -1
    for k in kimgs:
        gaps = {arm: d_logit_gaps(snaps[arm][k], train_img, held_img, masks) for arm in ARMS}
        p = stats["ada"].get(k, {}).get("augment_p", float("nan"))
        print(f"{k:>5} | {gaps['noaug']['center']:>9.3f} {gaps['noaug']['free-form']:>8.3f} "
              f"{mean_signs(stats['noaug'], prev, k):>6.2f} | {gaps['ada']['center']:>8.3f} "
              f"{gaps['ada']['free-form']:>7.3f} {mean_signs(stats['ada'], prev, k):>6.2f} {p:>6.3f}", flush=True)
        prev = k
    last = kimgs[-1]
    seeds = list(range(num_seeds))
    print(f"\nheld-out faces 80-99 at {last} kimg, G_ema, seeds {seeds[0]}-{seeds[-1]} (L1 in the hole in [0, 1], "
          f"PSNR dB, SSIM; diversity = mean pairwise L1 between seeds in the hole)")
    print(f"{'arm':<6} {'mask':<10} {'L1 hole':>8} {'PSNR':>7} {'SSIM':>7} {'divers.':>8}")
    for arm in ARMS:
        scores = inpainting_scores(snaps[arm][last], held_img, masks, seeds)
        for spec in EVAL_MASKS:
            s = scores[spec]
            print(f"{arm:<6} {spec:<10} {s['l1_hole']:>8.4f} {s['psnr']:>7.2f} {s['ssim']:>7.4f} "
                  f"{s['diversity']:>8.4f}")


@click.command()
@click.option("--outdir", required=True, metavar="DIR", help="Where the datasets and both arms' runs go.")
@click.option("--kimg", type=click.FloatRange(min=1), default=70.0, help="Training length of each arm.")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Training seed (both arms) and mask seed.")
@click.option("--ada-kimg", type=click.FloatRange(min=0, min_open=True), default=10.0,
              help="ADA speed of the ada arm: kimg for p to move by 1.")
@click.option("--snap", "snap_ticks", type=click.IntRange(min=1), default=5,
              help="kimg between snapshots (ticks of 1 kimg): the rows of the over-time table.")
@click.option("--seeds", "num_seeds", type=click.IntRange(min=2), default=5, help="Inpainting seeds per face.")
@click.option("--eval-only", is_flag=True, help="Do not train: report on the runs already in --outdir.")
def main(outdir, kimg, seed, ada_kimg, snap_ticks, num_seeds, eval_only):
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    minutes = dict.fromkeys(ARMS)
    if eval_only:
        runs = {arm: run_dir_of(outdir, arm) for arm in ARMS}
    else:
        data = write_faces_zip(os.path.join(outdir, "faces-0-19.zip"), TRAIN_FACES)
        t0 = time.time()
        runs = train_arms(outdir, data, kimg, seed, ada_kimg, snap_ticks)
        minutes = dict.fromkeys(ARMS, (time.time() - t0) / 60)
    report(runs, seed, num_seeds, kimg, ada_kimg, minutes)


if __name__ == "__main__":
    main()
