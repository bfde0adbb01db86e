"""The comparison run (calc_metrics.py with several methods / --outdir): the table's rows and columns, reruns that
reproduce it, the same numbers as single-method runs, the plot and sheet files, the no-detector path and bad inputs."""

import csv
import json
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner
from test_metrics import make_zip, save_tiny_detector
from test_metrics_cli import _tiny_snapshot

import calc_metrics
from metrics import metric_main, report_files
from metrics.baselines import make_baseline

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

PROTOCOLS = ("center", "free-form-small")
METHODS = ("ours", "Telea", "PatchMatch")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("comparison")
    return dict(root=root, detector=save_tiny_detector(root), zip32=make_zip(root / "val32.zip", 6, 32, seed=2),
                snap=_tiny_snapshot(root / "network-snapshot-000000.pt"))


def _invoke(*args):
    return CliRunner().invoke(calc_metrics.main, [str(a) for a in args])


def _compare(files, outdir, *extra, metrics="pix6,fid6,ids6"):
    return _invoke("--network", f"ours={files['snap']}", "--baseline", "telea,patchmatch", "--data", files["zip32"],
                   "--mask", ",".join(PROTOCOLS), "--metrics", metrics, "--device", "cpu", "--batch", 4,
                   "--outdir", outdir, "--cache-dir", files["root"] / "cache", *extra)


@pytest.fixture(scope="module")
def run_twice(files, tmp_path_factory):
    outdirs = [tmp_path_factory.mktemp("run") / "out" for _ in range(2)]
    for outdir in outdirs:
        res = _compare(files, outdir, "--detector", files["detector"], "--sheet", 3)
        assert res.exit_code == 0, res.output
    return outdirs


def test_table_has_one_row_per_method_and_a_column_group_per_protocol(run_twice):
    with open(run_twice[0] / "results.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    fields = ["fid6", "ids6_pids", "ids6_uids", "pix6_l1_hole", "pix6_l1", "pix6_psnr", "pix6_ssim"]
    assert rows[0] == ["method"] + [f"{p}/{k}" for p in PROTOCOLS for k in fields]
    assert [r[0] for r in rows[1:]] == [*METHODS, "best"]
    assert all(float(v) >= 0 for r in rows[1:4] for v in r[1:])
    assert all(set(best.split(";")) <= set(METHODS) and best for best in rows[4][1:])
    md = (run_twice[0] / "results.md").read_text(encoding="utf-8")
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(METHODS) and table[0].count("center ·") == len(fields)
    assert all(sum(f"| {m} |" in line for line in table) == 1 for m in METHODS)
    assert "**" in table[1] + table[2] + table[3]  # best values marked
    record = json.loads((run_twice[0] / "results.json").read_text())
    proto = record["protocol"]
    assert proto["num_images"] == 6 and proto["seed"] == 0 and [m["spec"] for m in proto["masks"]] == list(PROTOCOLS)
    assert proto["detector"]["available"] and len(proto["detector"]["sha256"]) == 64 and proto["code_version"]
    assert [m["kind"] for m in record["methods"]] == ["network", "baseline", "baseline"]


def test_a_rerun_reproduces_every_number(run_twice):
    first, second = (json.loads((d / "results.json").read_text()) for d in run_twice)
    assert first["results"] == second["results"] and first["hole_buckets"] == second["hole_buckets"]
    assert (run_twice[0] / "results.csv").read_bytes() == (run_twice[1] / "results.csv").read_bytes()
    assert (run_twice[0] / "sheet.png").read_bytes() == (run_twice[1] / "sheet.png").read_bytes()


def test_numbers_equal_single_method_runs(run_twice, files):
    record = json.loads((run_twice[0] / "results.json").read_text())
    for name, key in (("telea", "telea"), ("patchmatch", "patchmatch")):
        for spec in PROTOCOLS:
            single = metric_main.calc_metric("pix6", G=make_baseline(name), data_path=files["zip32"], mask_spec=spec,
                                             device="cpu", batch_size=4)
            expect = dict(single.results)
            got = {k: v for k, v in record["results"][key][spec].items() if k.startswith("pix6")}
            assert got == expect, (name, spec)


def test_plot_and_sheet_are_pngs_of_the_expected_size(run_twice, files):
    with PIL.Image.open(run_twice[0] / "holes.png") as im:
        assert im.format == "PNG" and im.size == (1200, 340)
    with PIL.Image.open(run_twice[0] / "sheet.png") as im:
        # 32x32 tiles enlarged 4x; columns input, 3 methods, original; 3 images per protocol; 16 px label bands.
        tile, gap, band = 128, 2, 16
        width = 5 * tile + 4 * gap
        height = band + len(PROTOCOLS) * (band + 3 * tile + 2 * gap)
        assert im.format == "PNG" and im.size == (width, height)
        sheet = np.asarray(im.convert("RGB"))
    # The last column of the first image row is the original: validation image 0, enlarged.
    from data.dataset import ImageDataset

    original = ImageDataset(files["zip32"])[0].transpose(1, 2, 0).repeat(4, axis=0).repeat(4, axis=1)
    assert np.array_equal(sheet[2 * band: 2 * band + tile, -tile:], original)


def test_pixel_only_run_needs_no_detector_and_says_so(files, tmp_path, monkeypatch):
    monkeypatch.setenv("COMODGAN_DETECTOR", str(tmp_path / "no-such-detector.pt"))
    res = _compare(files, tmp_path / "pix", "--sheet", 0, metrics="pix6")
    assert res.exit_code == 0, res.output
    md = (tmp_path / "pix" / "results.md").read_text(encoding="utf-8")
    assert "FID and P-IDS/U-IDS not requested" in md and "FID" not in md.split("\n| method")[1]
    assert not (tmp_path / "pix" / "sheet.png").exists()
    # Asked for FID/IDS, but the default detector is missing: pixel columns only, and the table says why.
    res = _compare(files, tmp_path / "nodet", "--sheet", 1, metrics="pix6,fid6,ids6")
    assert res.exit_code == 0, res.output
    md = (tmp_path / "nodet" / "results.md").read_text(encoding="utf-8")
    assert "not computed: no detector" in md and "no-such-detector.pt" in md
    assert "P-IDS" not in md.split("\n| method")[1].splitlines()[0]
    # A detector the user named must work.
    res = _compare(files, tmp_path / "named", "--detector", tmp_path / "missing.pt")
    assert res.exit_code == 2 and "missing.pt" in res.output


def test_bad_inputs_fail_before_any_work(files, tmp_path):
    res = _invoke("--baseline", "telea,no-such-method", "--data", files["zip32"], "--mask", "center",
                  "--metrics", "pix2",
                  "--outdir", tmp_path / "a")
    assert res.exit_code == 2 and "no-such-method" in res.output and "telea, ns, patchmatch, fsr-fast" in res.output
    zip16 = make_zip(tmp_path / "val16.zip", 4, 16)
    res = _invoke("--network", files["snap"], "--baseline", "telea", "--data", zip16, "--mask", "center",
                  "--metrics", "pix2", "--device", "cpu", "--outdir", tmp_path / "b")
    assert res.exit_code == 2 and "16x16" in res.output and "32x32" in res.output, res.output
    assert "img/s" not in res.output and not (tmp_path / "b").exists()  # no progress bar ran, nothing written
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("dataset.json", "{}")
    res = _invoke("--baseline", "telea,ns", "--data", empty, "--mask", "center", "--metrics", "pix2",
                  "--outdir", tmp_path / "c")
    assert res.exit_code == 2 and "empty.zip" in res.output and "Traceback" not in res.output, res.output
    small = make_zip(tmp_path / "three.zip", 3, 32)
    res = _invoke("--baseline", "telea,ns", "--data", small, "--mask", "center", "--metrics", "ids3,pix3",
                  "--detector", files["detector"], "--device", "cpu", "--outdir", tmp_path / "d",
                  "--cache-dir", tmp_path)
    assert res.exit_code == 2 and "at least 4 distinct validation images" in res.output and "img/s" not in res.output


def test_best_marks_follow_the_direction_of_each_column():
    record = dict(
        protocol=dict(metrics={"pix4": dict(kind="pix", num_items=4)}, masks=[dict(spec="center")]),
        methods=[dict(key="a", label="A"), dict(key="b", label="B")],
        results={"a": {"center": {"pix4_l1_hole": 0.1, "pix4_l1": 0.2, "pix4_psnr": 30.0, "pix4_ssim": 0.5}},
                 "b": {"center": {"pix4_l1_hole": 0.2, "pix4_l1": 0.2, "pix4_psnr": 20.0, "pix4_ssim": 0.9}}})
    tab = report_files.table(record)
    assert [c[2] for c in tab["columns"]] == ["L1 hole", "L1", "PSNR", "SSIM"]
    assert tab["best"] == [{0}, {0, 1}, {0}, {1}]
