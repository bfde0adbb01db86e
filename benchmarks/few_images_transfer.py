"""The few-image transfer experiment of docs/own-data.md: pretrain `tiny` on 70 faces, then fine-tune on 10 other
faces three ways, with the same length each (from scratch, `--init` from the pretrained snapshot, and `--init`
plus `--freeze-d N`), and score every arm on the 20 held-out faces; prints the table with its seeds and machine.

    python -m benchmarks.few_images_transfer --outdir /tmp/transfer --pretrain-kimg 40 --finetune-kimg 20

Faces: scikit-image's lfw_subset (faces 0-69 pretrain, 70-79 fine-tune, 80-99 held out), 25x25 gray upscaled
bicubic to 32x32 RGB. Training: train.py as a user runs it (--cfg tiny, mixed free-form/center masks, --workers 0,
one torch thread per run, side by side: pretraining beside the scratch arm, then the two --init arms; with
--pretrained the three arms). Evaluation on the held-out faces, per mask kind (the 25% center square; the
official free-form generator), of every snapshot after the first: L1 in the hole, PSNR and SSIM of the whole
image (metrics/pixel_metrics.py), averaged over faces and latent seeds, and the seeds' diversity (mean pairwise
L1 in the hole, demo_lib/report.py), with the evaluation's G settings (no truncation, random noise, dropout on).
"""

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

from dnnlib import EasyDict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLITS = {"pretrain": range(0, 70), "finetune": range(70, 80), "heldout": range(80, 100)}
RESOLUTION = 32
TRAIN_MASK = "mixed:free-form=0.5,center=0.5"  # demo.py's training masks
EVAL_MASKS = ("center", "free-form")


def write_face_zip(path, indices):
    """A stylegan2-ada style zip of the lfw faces `indices`, bicubic 25 -> 32, gray -> RGB."""
    from demo_lib.faces import load_faces

    faces = load_faces()
    with zipfile.ZipFile(path, "w") as zf:
        for i in indices:
            img = PIL.Image.fromarray(faces[i]).resize((RESOLUTION, RESOLUTION), PIL.Image.BICUBIC).convert("RGB")
            buf = io.BytesIO()
            img.save(buf, format="png")
            zf.writestr(f"face-{i:03d}.png", buf.getvalue())
    return path


def heldout_faces():
    """uint8 [20, 3, 32, 32] held-out faces, upscaled as the training zips are."""
    from demo_lib.faces import load_faces

    faces = load_faces()
    return np.stack([np.asarray(PIL.Image.fromarray(faces[i]).resize((RESOLUTION, RESOLUTION), PIL.Image.BICUBIC)
                                .convert("RGB")).transpose(2, 0, 1) for i in SPLITS["heldout"]])


def train_command(data, outdir, kimg, opts, extra=()):
    return [sys.executable, os.path.join(REPO, "train.py"), "--cfg", "tiny", "--data", data, "--mask", TRAIN_MASK,
            "--outdir", outdir, "--kimg", f"{kimg:g}", "--batch", str(opts.batch), "--tick-kimg", "1",
            "--snap", str(opts.snap_kimg), "--metrics", "none", "--seed", str(opts.seed), "--workers", "0",
            "--device", "cpu", *extra]


def run_parallel(jobs):
    """Run (name, command, log path) jobs side by side, one torch thread each; returns the minutes of each."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = []
    for name, cmd, log in jobs:
        with open(log, "w", encoding="utf-8") as f:
            started.append((name, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO),
                            time.time(), log))
    minutes = {}
    for name, proc, t0, log in started:
        if proc.wait() != 0:
            raise click.ClickException(f"{name}: train.py failed; see {log}")
        minutes[name] = (time.time() - t0) / 60
    return minutes


def snapshots_of(outdir):
    """[(kimg, path)] of the one run under `outdir`."""
    from training.checkpoint import list_snapshots

    runs = sorted(os.path.join(outdir, d) for d in os.listdir(outdir) if os.path.isdir(os.path.join(outdir, d)))
    return list_snapshots(runs[-1])


def evaluate(snapshot, faces, seeds, mask_seed):
    """{mask kind: {l1_hole, psnr, ssim, diversity}} of one snapshot's G_ema on the held-out faces."""
    from data.masks import eval_mask
    from demo_lib.report import seed_diversity
    from inference.inpaint import run_inpainter, seed_to_z
    from inference.loading import load_generator
    from metrics.pixel_metrics import pixel_row, summarize_rows

    G = load_generator(snapshot, "cpu", impl="ref")
    img = torch.from_numpy(faces).float() / 127.5 - 1
    out = {}
    for spec in EVAL_MASKS:
        masks = np.stack([eval_mask(spec, RESOLUTION, mask_seed, i) for i in range(len(faces))])
        fakes = []
        for seed in seeds:
            z = torch.from_numpy(np.stack([seed_to_z(seed, G.z_dim)] * len(faces)))
            fake = run_inpainter(G, img, torch.from_numpy(masks)[:, None], z, torch_seed=seed, truncation_psi=1.0,
                                 noise_mode="random", dropout=True)
            fakes.append(((fake + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy())
        rows = [pixel_row(faces[i], fake[i], masks[i]) for fake in fakes for i in range(len(faces))]
        summary = summarize_rows(rows)
        div = seed_diversity([dict(mask=masks[i], ours=[f[i].transpose(1, 2, 0) for f in fakes])
                              for i in range(len(faces))])
        out[spec] = dict(l1_hole=summary["l1_hole"], psnr=summary["psnr"], ssim=summary["ssim"], diversity=div)
    return out


def machine():
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def table(results, opts):
    head = ["arm", "kimg", "train min"] + [f"{m} {k}" for m in EVAL_MASKS for k in ("L1 hole", "PSNR", "SSIM", "div")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["arm"], f"{r['kimg']:g}", f"{r['minutes']:.1f}" if r["minutes"] is not None else "-"]
        for m in EVAL_MASKS:
            v = r["scores"][m]
            cells += [f"{v['l1_hole']:.4f}", f"{v['psnr']:.2f}", f"{v['ssim']:.4f}", f"{v['diversity']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@click.command()
@click.option("--outdir", required=True, metavar="DIR", help="Zips, runs, logs and results.json go here.")
@click.option("--pretrain-kimg", type=click.FloatRange(min=0.001), default=40.0, show_default=True,
              help="Pretraining length on the 70 faces.")
@click.option("--finetune-kimg", type=click.FloatRange(min=0.001), default=20.0, show_default=True,
              help="Length of every fine-tuning arm on the 10 faces.")
@click.option("--freeze-d", type=click.IntRange(min=1, max=10), default=4, show_default=True,
              help="Freeze-D layers of the third arm (4 = the whole 32x32 block of D).")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True, help="Batch of every run.")
@click.option("--snap-kimg", type=click.IntRange(min=1), default=5, show_default=True,
              help="kimg between snapshots; every snapshot is scored.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Training seed of every run.")
@click.option("--eval-seeds", default="0-3", show_default=True, help="Latent seeds per held-out face.")
@click.option("--pretrained", metavar="PT", help="Reuse this pretrained snapshot (e.g. an earlier run's "
              "pretrain/.../network-snapshot-*.pt) instead of pretraining; the three arms then train side by side.")
def main(outdir, pretrain_kimg, finetune_kimg, freeze_d, batch, snap_kimg, seed, eval_seeds, pretrained):
    """Pretrain on 70 faces, fine-tune on 10 three ways, score on 20 held-out faces; prints the table."""
    from inference.inpaint import parse_seeds

    opts = EasyDict(click.get_current_context().params)
    seeds = parse_seeds(eval_seeds)
    os.makedirs(outdir, exist_ok=True)
    zips = {name: write_face_zip(os.path.join(outdir, f"{name}.zip"), SPLITS[name]) for name in ("pretrain",
                                                                                                   "finetune")}
    def job(name, data, kimg, extra=()):
        return (name, train_command(zips[data], dirs[name], kimg, opts, extra), dirs[name] + ".log")

    names = ["scratch", "init", f"init + freeze-d {freeze_d}"]
    dirs = {name: os.path.join(outdir, name.replace(" + ", "-").replace(" ", "")) for name in ["pretrain", *names]}
    def init_jobs(path):
        return [job(names[1], "finetune", finetune_kimg, ("--init", path)),
                job(names[2], "finetune", finetune_kimg, ("--init", path, "--freeze-d", str(freeze_d)))]

    if pretrained:
        minutes = run_parallel([job("scratch", "finetune", finetune_kimg), *init_jobs(pretrained)])
    else:
        # The scratch arm needs no pretrained network: it trains beside the pretraining, the --init arms after it.
        minutes = run_parallel([job("pretrain", "pretrain", pretrain_kimg), job("scratch", "finetune", finetune_kimg)])
        pretrained = snapshots_of(dirs["pretrain"])[-1][1]
        minutes.update(run_parallel(init_jobs(pretrained)))
    faces = heldout_faces()
    results = [dict(arm="pretrained on 70, no fine-tuning", kimg=0, minutes=minutes.get("pretrain"),
                    scores=evaluate(pretrained, faces, seeds, seed))]
    for name in names:
        snaps = snapshots_of(dirs[name])
        for kimg, path in snaps:
            final = path == snaps[-1][1]
            if kimg == 0 and not final:  # the snapshot after the first step
                continue
            results.append(dict(arm=name, kimg=kimg, minutes=minutes[name] if final else None,
                                scores=evaluate(path, faces, seeds, seed)))
    with open(os.path.join(outdir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(dict(results=results, options=click.get_current_context().params, machine=machine()), f, indent=2)
    source = f"pretrain {pretrain_kimg:g} kimg" if minutes.get("pretrain") else f"pretrained {pretrained}"
    print(f"Few-image transfer: {source} on lfw faces 0-69, fine-tune {finetune_kimg:g} kimg "
          f"on faces 70-79, scored on faces 80-99 (masks seed {seed}, latent seeds {eval_seeds}); --cfg tiny, batch "
          f"{batch}, training seed {seed}; {machine()}")
    print("'train min': wall time of the final snapshot's run (runs side by side, one torch thread each); "
          "intermediate snapshots have none. L1 hole: mean |real - fill| / 255 in the hole; PSNR, SSIM: whole "
          "image; div: mean pairwise L1 between the latent seeds' fills in the hole.")
    print(table(results, opts))


if __name__ == "__main__":
    main()
