"""The demo: its embedded face dataset, and the whole train -> inpaint -> evaluate -> report path, shortened."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from data.dataset import ImageDataset
from dataset_tool import convert_dataset
from demo_lib.faces import export_images, load_faces, write_face_pngs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_faces_are_the_first_100_lfw_images_as_8_bit_pngs(tmp_path):
    from skimage.data import lfw_subset

    faces = load_faces()
    assert faces.shape == (100, 25, 25) and faces.dtype == np.uint8
    assert np.abs(faces / 255.0 - lfw_subset()[:100]).max() <= 0.5 / 255 + 1e-9
    paths = write_face_pngs(str(tmp_path / "faces"))
    assert [os.path.basename(p) for p in paths[:2]] == ["face-000.png", "face-001.png"] and len(paths) == 100
    assert np.array_equal(np.asarray(PIL.Image.open(paths[42])), faces[42])


def test_dataset_tool_split_and_export_of_the_held_out_faces(tmp_path):
    faces_dir = tmp_path / "faces"
    write_face_pngs(str(faces_dir))
    dest = str(tmp_path / "faces.zip")
    res = convert_dataset(str(faces_dir), dest, 32, val_count=10, seed=0)
    assert (res["num_train"], res["num_val"], res["upscaled"]) == (90, 10, 100)
    train, val = ImageDataset(dest), ImageDataset(res["val_dest"])
    assert train.resolution == val.resolution == 32 and train[0].shape == (3, 32, 32)
    paths = export_images(res["val_dest"], str(tmp_path / "val"))
    names = sorted(os.path.basename(p) for p in paths)
    assert len(names) == 10 and all(n.startswith("face-") and n.endswith(".png") for n in names)
    exported = {np.asarray(PIL.Image.open(p)).transpose(2, 0, 1).tobytes() for p in paths}
    assert exported == {val[i].tobytes() for i in range(len(val))}
    assert not exported & {train[i].tobytes() for i in range(len(train))}  # held out means held out
    # Each exported file is named after its source face: shrinking it back to 25x25 finds that face.
    faces = load_faces()
    for p in paths:
        idx = int(os.path.basename(p)[5:8])
        gray = np.asarray(PIL.Image.open(p))[..., 0]
        back = np.asarray(PIL.Image.fromarray(gray).resize((25, 25), PIL.Image.LANCZOS)).astype(float)
        errs = np.abs(back[None] - faces.astype(float)).mean(axis=(1, 2))
        assert int(errs.argmin()) == idx


@pytest.mark.slow
def test_demo_end_to_end_shortened(tmp_path):
    outdir = tmp_path / "demo"
    cmd = [sys.executable, os.path.join(REPO, "demo.py"), "--outdir", str(outdir), "--kimg", "0.016", "--seeds", "0-1",
           "--metric", "pix20", "--num-val", "5"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "report.html" in proc.stdout
    report = (outdir / "report.md").read_text()
    with open(outdir / "comparison" / "results.json", encoding="utf-8") as f:
        record = json.load(f)
    specs = ("center", "free-form-small", "free-form-large")
    figures = {m["label"]: [record["results"][m["key"]][spec][f"pix20_{name}"]
                            for spec in specs for name in ("l1_hole", "l1", "psnr", "ssim")]
               for m in record["methods"]}
    assert list(figures) == ["CoModGAN tiny (ours)", "CoModGAN tiny + L1 (ours)", "Telea", "Navier-Stokes",
                             "PatchMatch"]
    for method, values in figures.items():  # the report's table shows the measured figures
        row = [line for line in report.splitlines() if line.startswith(f"| {method} |")]
        assert len(row) == 1, (method, report)
        shown = [float(v.strip(" *")) for v in row[0].strip("|").split("|")[1:]]
        assert len(shown) == 3 * 4  # 3 protocols x (L1 hole, L1, PSNR, SSIM)
        assert np.allclose(shown, values, rtol=0, atol=[5e-5, 5e-5, 5e-3, 5e-5] * 3), (method, shown, values)
    # The traditional methods fill 32x32 gray faces well (measured: L1 in the hole about 0.10, PSNR 21-27 dB);
    # networks trained on 16 images fill noise, far behind them on every column (L1 in the hole about 0.3-0.4).
    for base in ("Telea", "Navier-Stokes", "PatchMatch"):
        assert all(0.02 < v < 0.2 for v in figures[base][0::4]) and all(18 < v < 35 for v in figures[base][2::4])
    best_hole = {spec: min(figures[b][4 * i] for b in ("Telea", "Navier-Stokes", "PatchMatch"))
                 for i, spec in enumerate(specs)}
    for net in ("CoModGAN tiny (ours)", "CoModGAN tiny + L1 (ours)"):
        for i, spec in enumerate(specs):
            assert figures[net][4 * i] > 1.5 * best_hole[spec], (net, spec, figures[net])
            verdict = f"{net}, {spec}: behind the best baseline on every column: L1 hole {figures[net][4 * i]:.4f} vs "
            assert verdict + f"{best_hole[spec]:.4f}" in report, (verdict, report)
    for spec in ("center", "free-form-small", "free-form-large"):
        assert f"{spec} · PSNR ↑" in report
    assert "FID and P-IDS/U-IDS not requested" in report
    # Both networks trained side by side, each in its own folder, with the demo's batch (not the preset's 32).
    import demo

    assert f"0.016 kimg per network, batch {demo.DEMO_BATCH}, masks {demo.TRAIN_MASK}" in report
    assert "2 networks side by side" in report
    for key in ("gan", "gan-l1"):
        assert len(list((outdir / "training-runs" / key).glob("*/network-snapshot-*.pt"))) >= 1
    html = (outdir / "report.html").read_text()
    assert html.count("<tr>") == 2 + 5 and "comparison-gan-center.png" in html and "comparison/sheet.png" in html
    assert "better than every baseline" not in report
    diversity = re.findall(r"Seed diversity: the 2 seeds' completions differ by a mean pairwise L1 of ([0-9.]+)",
                           report)
    assert len(diversity) == 4 and all(0 < float(d) < 1 for d in diversity)  # random noise: the seeds differ
    steps = re.findall(r"a mean brightness step of ([0-9.]+) across the hole's edge \(the real faces: ([0-9.]+)\)",
                       report)
    assert len(steps) == 4 and all(0 < float(real) < 0.2 for _fill, real in steps)
    for key in ("gan", "gan-l1"):
        for spec in ("center", "free-form-large"):
            sheet = np.asarray(PIL.Image.open(outdir / f"comparison-{key}-{spec}.png"))
            # 5 faces x (input, 3 baselines, 2 seeds, original), enlarged 4x
            assert sheet.shape[0] > 5 * 32 * 4 and sheet.shape[1] > 7 * 32 * 4
            grids = [f for f in os.listdir(outdir / "generate" / key / spec) if f.endswith("-grid.png")]
            assert len(grids) == 5
    assert list(record["protocol"]["metrics"]) == ["pix20"] and len(record["methods"]) == 5
    for name in ("holes.png", "sheet.png", "results.csv"):
        assert (outdir / "comparison" / name).is_file()


def test_seed_diversity_is_the_mean_pairwise_l1_inside_the_hole():
    from demo_lib.report import seed_diversity

    mask = np.ones((4, 4), np.float32)
    mask[1:3, 1:3] = 0
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1:3, 1:3] = 51  # 0.2 apart inside the hole
    b[0, 0] = 255  # outside the hole: ignored
    c = a.copy()
    rows = [dict(mask=mask, ours=[a, b, c]), dict(mask=mask, ours=[a, a, a])]
    # face 1: pairs (a, b) 0.2, (a, c) 0, (b, c) 0.2 -> 0.4 / 3; face 2: 0
    assert abs(seed_diversity(rows) - 0.2 / 3) < 1e-12
    assert seed_diversity([dict(mask=mask, ours=[a])]) is None


def test_verdict_lines_say_where_the_network_wins_and_loses():
    from demo_lib.report import verdict_lines

    record = dict(
        protocol=dict(masks=[dict(spec="center"), dict(spec="free-form-small")],
                      metrics={"pix20": dict(kind="pix", num_items=20)}),
        methods=[dict(key="net", label="ours", kind="network"), dict(key="t", label="Telea", kind="baseline"),
                 dict(key="n", label="NS", kind="baseline")],
        results={"net": {"center": dict(pix20_l1_hole=0.09, pix20_l1=0.02, pix20_psnr=24.0, pix20_ssim=0.63),
                         "free-form-small": dict(pix20_l1_hole=0.12, pix20_l1=0.03, pix20_psnr=25.0,
                                                 pix20_ssim=0.80)},
                 "t": {"center": dict(pix20_l1_hole=0.11, pix20_l1=0.03, pix20_psnr=23.4, pix20_ssim=0.60),
                       "free-form-small": dict(pix20_l1_hole=0.10, pix20_l1=0.02, pix20_psnr=26.5,
                                               pix20_ssim=0.85)},
                 "n": {"center": dict(pix20_l1_hole=0.10, pix20_l1=0.03, pix20_psnr=23.5, pix20_ssim=0.61),
                       "free-form-small": dict(pix20_l1_hole=0.09, pix20_l1=0.02, pix20_psnr=27.0,
                                               pix20_ssim=0.86)}})
    center, small = verdict_lines(record)
    assert center.startswith("ours, center: better than every baseline on L1 hole 0.0900 vs 0.1000 (NS)")
    assert "behind" not in center and "PSNR 24.00 vs 23.50 (NS)" in center
    assert small.startswith("ours, free-form-small: behind the best baseline on every column: "
                            "L1 hole 0.1200 vs 0.0900 (NS)")


def test_the_sheets_draw_completions_as_calc_metrics_measures_them():
    # With 'const' noise one fixed noise image is stamped into every face and seed (a grid of speckle where the
    # network learned a strong noise strength); calc_metrics.py calls G with its default noise and dropout on.
    import inspect

    import calc_metrics
    import demo
    from training.networks import Generator

    assert demo.NOISE_MODE == inspect.signature(Generator.forward).parameters["noise_mode"].default == "random"
    dropout = [p for p in calc_metrics.main.params if p.name == "dropout"][0]
    assert demo.DROPOUT is dropout.default is True


def test_the_networks_train_side_by_side_on_a_split_of_the_cpu_cores():
    import torch

    import demo

    cpu = torch.device("cpu")
    assert [demo.train_threads(cpu, 2, cpus=n) for n in (1, 2, 3, 16)] == [1, 1, 1, 8]
    assert demo.train_threads(torch.device("cuda"), 2, cpus=16) is None  # the accelerator does the work
    assert [net.key for net in demo.NETWORKS] == ["gan", "gan-l1"]
    assert demo.NETWORKS[0].train_args == ()  # the published recipe: adversarial loss only, the preset's lr


def test_side_by_side_scripts_stop_together_when_one_fails(tmp_path):
    # A failing run must not leave its partner training for minutes: the error comes at once, with the log's tail.
    import time

    import demo
    from dnnlib import UserError

    sleeper, failer = tmp_path / "sleeper.py", tmp_path / "failer.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    failer.write_text("import sys, time\ntime.sleep(0.5)\nprint('bad option --lr')\nsys.exit(3)\n")
    t0 = time.time()
    with pytest.raises(UserError, match=r"(?s)failed \(exit 3\).*bad option --lr"):
        demo._run_scripts([([str(sleeper)], str(tmp_path / "a.log")), ([str(failer)], str(tmp_path / "b.log"))])
    assert time.time() - t0 < 20
    ok = tmp_path / "ok.py"
    ok.write_text("import os\nprint(os.environ['OMP_NUM_THREADS'])\n")
    demo._run_scripts([([str(ok)], str(tmp_path / "c.log")), ([str(ok)], str(tmp_path / "d.log"))],
                      env={"OMP_NUM_THREADS": "1"})
    assert (tmp_path / "c.log").read_text() == (tmp_path / "d.log").read_text() == "1\n"


def test_an_outdir_that_is_a_file_is_named_before_any_work(tmp_path):
    from click.testing import CliRunner

    import demo

    taken = tmp_path / "results"
    taken.write_text("a file where the demo's folder would go")
    result = CliRunner().invoke(demo.main, ["--outdir", str(taken)])
    assert result.exit_code == 2 and f"--outdir {taken}: is a file, not a folder" in result.stderr, result.output
    assert "Traceback" not in result.output


def test_hole_edge_stats_see_a_seam_and_colour_at_the_edge_and_nothing_in_a_perfect_fill():
    from demo_lib.report import hole_edge_stats

    rng = np.random.default_rng(0)
    gray = rng.integers(60, 150, (8, 8)).astype(np.uint8)  # no clipping below
    real = np.repeat(gray[..., None], 3, axis=2)
    mask = np.ones((8, 8), np.float32)
    mask[2:6, 2:6] = 0  # 16 hole pixels, 12 of them next to a known pixel, 4 inside with ring_px=1
    perfect = hole_edge_stats([dict(image=real, mask=mask, ours=[real])], ring_px=1)
    assert perfect["step"] == perfect["step_real"] > 0
    assert perfect["colour_edge"] < 1e-12 and perfect["colour_inside"] < 1e-12
    # A fill brighter by 51 (0.2) inside the hole: every edge pair shows it; a red tint on the ring only.
    seam = real.astype(int)
    seam[2:6, 2:6] += 51
    tinted = seam.copy()
    ring = np.zeros((8, 8), bool)
    ring[2:6, 2:6] = True
    ring[3:5, 3:5] = False
    tinted[ring, 0] += 30  # R + 30 on the ring: distance from gray = (20 + 10 + 10) / 3 / 255
    stats = hole_edge_stats([dict(image=real, mask=mask, ours=[np.clip(tinted, 0, 255).astype(np.uint8)])],
                            ring_px=1)
    hole = mask == 0
    edge = [(i, j, i + di, j + dj) for i in range(8) for j in range(8) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))
            if hole[i, j] and 0 <= i + di < 8 and 0 <= j + dj < 8 and not hole[i + di, j + dj]]
    assert len(edge) == 16  # 4 sides x 4 pixels
    g = np.clip(tinted, 0, 255).mean(axis=2) / 255
    expected = np.mean([abs(g[i, j] - g[k, m]) for i, j, k, m in edge])
    assert abs(stats["step"] - expected) < 1e-12 and stats["step"] > perfect["step_real"]
    assert abs(stats["colour_edge"] - 40 / 3 / 255) < 1e-12 and stats["colour_inside"] < 1e-12
    assert hole_edge_stats([dict(image=real, mask=np.ones((8, 8)), ours=[real])]) is None
