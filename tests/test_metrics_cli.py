"""calc_metrics.py end to end on a tiny zip made here: OpenCV baseline, a tiny network snapshot, clear errors, and
two gloo processes giving the same numbers as one."""

import json

import pytest
import torch
from click.testing import CliRunner
from test_metrics import make_zip, save_tiny_detector

import calc_metrics

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return dict(root=root, detector=save_tiny_detector(root), zip16=make_zip(root / "val16.zip", 10, 16),
                zip32=make_zip(root / "val32.zip", 6, 32, seed=1))


def _invoke(*args):
    return CliRunner().invoke(calc_metrics.main, [str(a) for a in args])


def test_split_mask_specs_keeps_mixed_specs_together():
    assert calc_metrics.split_mask_specs(["center,free-form-small", "free-form-large"]) == [
        "center", "free-form-small", "free-form-large"]
    assert calc_metrics.split_mask_specs(["mixed:free-form=0.8,center=0.2,center"]) == [
        "mixed:free-form=0.8,center=0.2", "center"]
    assert calc_metrics.split_baselines(["telea,default", "shiftmap"]) == ["telea", "ns", "patchmatch", "shiftmap"]


def test_cli_baseline_telea_end_to_end(files, tmp_path):
    out = tmp_path / "res.json"
    res = _invoke("--baseline", "telea", "--data", files["zip16"], "--mask", "center,free-form",
                  "--metrics", "pix10,fid10,ids10", "--detector", files["detector"], "--out", out,
                  "--device", "cpu", "--batch", 4, "--cache-dir", tmp_path / "cache")
    assert res.exit_code == 0, res.output
    assert "pix10_psnr" in res.output and "ids10_pids" in res.output
    data = json.loads(out.read_text())
    assert data["baseline"] == "telea" and data["masks"] == ["center", "free-form"]
    assert [(r["mask"], r["metric"]) for r in data["results"]] == [
        (m, k) for m in ("center", "free-form") for k in ("pix10", "fid10", "ids10")]
    center_pix = data["results"][0]["results"]
    assert center_pix["pix10_center/num"] == 10 and 0 < center_pix["pix10_ssim"] < 1
    assert data["results"][1]["results"]["fid10"] > 0


def test_cli_errors_exit_2_with_a_message(files, tmp_path):
    cases = [
        (["--baseline", "telea", "--network", files["detector"]], "give --outdir"),
        (["--baseline", "telea,fmm"], "--baseline fmm: unknown method (choose from telea, ns, patchmatch"),
        (["--baseline", "telea", "--metrics", "fud10k"], "unknown metric 'fud10k'"),
        (["--baseline", "telea", "--mask", "squiggle"], "squiggle"),
        (["--network", tmp_path / "missing.pt"], "missing.pt: no such file"),
        # Checked before the evaluation (hours for a real FID run), not at its first write.
        (["--baseline", "telea", "--out", tmp_path], f"--out {tmp_path}: is a folder, not a file"),
        (["--baseline", "telea,ns", "--outdir", files["zip16"]], "is a file, not a folder"),
    ]
    for extra, message in cases:
        args = ["--data", files["zip16"], "--device", "cpu", "--metrics", "pix2", "--mask", "center"] + extra
        res = _invoke(*args)
        assert res.exit_code == 2, res.output
        assert "error:" in res.output and message in res.output, res.output
    corrupt = tmp_path / "inception.pt"
    corrupt.write_bytes(b"garbage")
    res = _invoke("--baseline", "ns", "--data", files["zip16"], "--mask", "center", "--metrics", "fid2",
                  "--detector", corrupt, "--device", "cpu", "--cache-dir", tmp_path)
    assert res.exit_code == 2 and "inception.pt" in res.output and "Traceback" not in res.output


def _tiny_snapshot(path, resolution=32):
    from training.checkpoint import save_snapshot
    from training.networks import Generator

    torch.manual_seed(0)
    kwargs = dict(z_dim=16, w_dim=16, img_resolution=resolution, channel_base=256, channel_max=16,
                  mapping_kwargs=dict(num_layers=2))
    G = Generator(**kwargs)
    save_snapshot(path, {"G_kwargs": G.init_kwargs, "D_kwargs": {}, "G": G.state_dict(), "G_ema": G.state_dict(),
                         "D": {}})
    return path


def test_cli_network_snapshot_and_wrong_resolution(files, tmp_path):
    snap = _tiny_snapshot(tmp_path / "network-snapshot-000000.pt")
    out1, out2 = tmp_path / "a.json", tmp_path / "b.json"
    for out in (out1, out2):
        res = _invoke("--network", snap, "--data", files["zip32"], "--mask", "free-form", "--metrics", "pix6,ids6",
                      "--detector", files["detector"], "--device", "cpu", "--out", out, "--cache-dir", tmp_path)
        assert res.exit_code == 0, res.output
    first, second = json.loads(out1.read_text()), json.loads(out2.read_text())
    assert [r["results"] for r in first["results"]] == [r["results"] for r in second["results"]]  # same seed
    assert first["dropout"] is True
    res = _invoke("--network", snap, "--data", files["zip16"], "--mask", "center", "--metrics", "pix2",
                  "--device", "cpu")
    assert res.exit_code == 2 and "16x16" in res.output and "32" in res.output, res.output


@pytest.mark.slow
def test_two_gloo_processes_match_one(files, tmp_path):
    outs = {}
    for n in (1, 2):
        outs[n] = tmp_path / f"n{n}.json"
        res = _invoke("--baseline", "telea", "--data", files["zip16"], "--mask", "free-form", "--metrics",
                      "pix7,ids7", "--detector", files["detector"], "--device", "cpu", "--num-gpus", n,
                      "--batch", 2, "--out", outs[n], "--cache-dir", tmp_path)
        assert res.exit_code == 0, res.output
    one, two = (json.loads(outs[n].read_text())["results"] for n in (1, 2))
    for a, b in zip(one, two):
        assert a["results"] == pytest.approx(b["results"], rel=1e-6), (a, b)
