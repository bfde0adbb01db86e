"""The evaluation protocol as files and other methods' completions scored from them: --export-protocol writes
exactly the comparison run's items, OpenCV Telea run on the exported PNGs by a separate script scores exactly like
the built-in `telea` baseline through --results, and every bad results folder is a named error before any work."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner
from test_metrics import make_zip, save_tiny_detector

import calc_metrics
from data.dataset import ImageDataset
from data.masks import eval_mask
from metrics.protocol_export import MASKED_FILL, item_name, protocol_folder_names

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = ("center", "free-form-small")
FOLDERS = ("center", "free-form-small")
NUM_IMAGES, NUM_ITEMS = 6, 8  # more items than images: items 6 and 7 reuse images 0 and 1 with their own masks
METRICS = "pix8,fid8,ids6"


def _invoke(*args):
    return CliRunner().invoke(calc_metrics.main, [str(a) for a in args])


def _export(files, outdir, *extra, data=None, metrics=METRICS):
    return _invoke("--export-protocol", outdir, "--data", data or files["zip"], "--mask", ",".join(SPECS),
                   "--metrics", metrics, *extra)


def _external(protocol_dir, out_dir, method="telea"):
    """The stand-in for another method's own code: a separate process that reads only the exported files."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "external_method.py"), "--protocol",
                           str(protocol_dir), "--out", str(out_dir), "--method", method],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out_dir


def _score(files, outdir, *extra, metrics=METRICS):
    return _invoke("--baseline", "telea", "--data", files["zip"], "--mask", ",".join(SPECS), "--metrics", metrics,
                   "--detector", files["detector"], "--device", "cpu", "--batch", 3, "--outdir", outdir,
                   "--cache-dir", files["root"] / "cache", "--sheet", 2, *extra)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    zip_path = make_zip(root / "val32.zip", NUM_IMAGES, 32, seed=3)
    res = _export(dict(zip=zip_path), root / "export")
    assert res.exit_code == 0, res.output
    telea = _external(root / "export", root / "telea-out")
    return dict(root=root, zip=zip_path, detector=save_tiny_detector(root), export=root / "export", telea=telea)


def _results_copy(files, tmp_path, name="out"):
    """A fresh copy of the Telea completions (with their manifest) that a test may break."""
    return shutil.copytree(files["telea"], tmp_path / name)


def _png(path):
    with PIL.Image.open(path) as img:
        return np.asarray(img)


# ---------------------------------------------------------------------------------------------------------------------
# The export.

def test_export_writes_exactly_the_items_of_the_run(files):
    dataset = ImageDataset(files["zip"])
    manifest = json.loads((files["export"] / "manifest.json").read_text())
    assert manifest["num_items"] == NUM_ITEMS and manifest["resolution"] == 32 and manifest["seed"] == 0
    assert [p["spec"] for p in manifest["protocols"]] == list(SPECS)
    assert len(manifest["protocol_hash"]) == 64 and manifest["metrics"] == METRICS.split(",")
    for proto, folder in zip(manifest["protocols"], FOLDERS):
        assert proto["folder"] == folder
        for kind in ("images", "masks", "masked"):
            assert sorted(os.listdir(files["export"] / folder / kind)) == [f"{i:05d}.png" for i in range(NUM_ITEMS)]
        for i, item in enumerate(proto["items"]):
            real = dataset[i % NUM_IMAGES].transpose(1, 2, 0)
            known = eval_mask(proto["spec"], 32, 0, i) == 1
            image = _png(files["export"] / folder / "images" / item["name"])
            holes = _png(files["export"] / folder / "masks" / item["name"])
            masked = _png(files["export"] / folder / "masked" / item["name"])
            assert np.array_equal(image, real)
            assert holes.dtype == np.uint8 and holes.ndim == 2
            assert np.array_equal(holes == 255, ~known) and np.array_equal(holes == 0, known)  # white = hole
            assert np.array_equal(masked[known], real[known]) and (masked[~known] == MASKED_FILL).all()
            assert item["image_index"] == i % NUM_IMAGES and item["hole_ratio"] == pytest.approx(1 - known.mean())


def test_export_is_reproducible_and_the_hash_follows_the_protocol(files, tmp_path):
    res = _export(files, tmp_path / "again")
    assert res.exit_code == 0, res.output
    first = json.loads((files["export"] / "manifest.json").read_text())
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert again["protocol_hash"] == first["protocol_hash"] and again["protocols"] == first["protocols"]
    assert first["protocol_hash"] in res.output
    res = _export(files, tmp_path / "seed1", "--seed", 1)
    assert res.exit_code == 0, res.output
    seed1 = json.loads((tmp_path / "seed1" / "manifest.json").read_text())
    assert seed1["protocol_hash"] != first["protocol_hash"]
    assert seed1["protocols"][0]["masks_sha256"] == first["protocols"][0]["masks_sha256"]  # center: no randomness
    assert seed1["protocols"][1]["masks_sha256"] != first["protocols"][1]["masks_sha256"]


def test_folder_and_item_names():
    assert protocol_folder_names(["free-form:0.2-0.4", "mixed:center=0.5,free-form=0.5", "free-form/0.2-0.4"]) == {
        "free-form:0.2-0.4": "free-form_0.2-0.4", "mixed:center=0.5,free-form=0.5": "mixed_center_0.5_free-form_0.5",
        "free-form/0.2-0.4": "free-form_0.2-0.4-2"}
    assert item_name(7, 8) == "00007.png" and item_name(7, 123456) == "000007.png"


def test_export_refuses_a_used_folder_and_methods(files, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.png").write_bytes(b"x")
    res = _export(files, tmp_path / "used")
    assert res.exit_code == 2 and "not empty" in res.output and str(tmp_path / "used") in res.output
    res = _export(files, tmp_path / "new", "--baseline", "telea")
    assert res.exit_code == 2 and "separate run" in res.output and not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------------------------------
# The round trip: Telea run outside on the exported files, read back with --results.

@pytest.fixture(scope="module")
def round_trip(files, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("scored") / "out"
    res = _score(files, outdir, "--results", f"outside={files['telea']}")
    assert res.exit_code == 0, res.output
    return outdir


def test_outside_telea_scores_exactly_like_the_builtin_telea(round_trip):
    record = json.loads((round_trip / "results.json").read_text())
    assert [m["key"] for m in record["methods"]] == ["telea", "outside"]
    builtin, outside = record["results"]["telea"], record["results"]["outside"]
    for spec in SPECS:
        assert {"pix8_psnr", "fid8", "ids6_pids", "ids6_uids"} <= set(outside[spec])
        assert outside[spec] == builtin[spec], spec  # every figure, to the last digit
    assert record["hole_buckets"]["values"]["outside"] == record["hole_buckets"]["values"]["telea"]
    with open(round_trip / "results.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[1][0] == "Telea" and rows[2][0] == "outside" and rows[1][1:] == rows[2][1:]
    assert "composited with the known pixels" in rows[-1][0]


def test_the_files_say_that_completions_are_composited(round_trip, files):
    record = json.loads((round_trip / "results.json").read_text())
    outside = record["methods"][1]
    assert outside["kind"] == "results" and outside["composited"] is True
    assert outside["protocol_hash"] == json.loads((files["export"] / "manifest.json").read_text())["protocol_hash"]
    assert "composited with the known pixels" in record["protocol"]["composite"]
    md = (round_trip / "results.md").read_text(encoding="utf-8")
    assert "outside: completions read from files (--results) and composited with the known pixels" in md
    with PIL.Image.open(round_trip / "sheet.png") as im:
        sheet = np.asarray(im.convert("RGB"))
    tile, gap, band = 128, 2, 16  # columns: input, Telea, outside, original
    telea_col = sheet[2 * band: 2 * band + tile, tile + gap: 2 * tile + gap]
    outside_col = sheet[2 * band: 2 * band + tile, 2 * (tile + gap): 3 * tile + 2 * gap]
    assert np.array_equal(telea_col, outside_col)


def test_known_pixels_of_a_completion_are_replaced_by_the_real_ones(files, round_trip, tmp_path):
    broken = _results_copy(files, tmp_path)
    for folder in FOLDERS:
        for name in os.listdir(broken / folder):
            path = broken / folder / name
            holes = _png(files["export"] / folder / "masks" / name)
            img = _png(path).copy()
            img[holes == 0] = 255 - img[holes == 0]  # wrong everywhere outside the hole
            PIL.Image.fromarray(img).save(path)
    res = _score(files, tmp_path / "scored", "--results", f"outside={broken}")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "scored" / "results.json").read_text())
    expected = json.loads((round_trip / "results.json").read_text())["results"]["telea"]
    assert record["results"]["outside"] == expected


def test_another_method_scores_differently(files, tmp_path):
    other = _external(files["export"], tmp_path / "biharmonic", method="biharmonic")
    res = _score(files, tmp_path / "scored", "--results", f"bih={other}", metrics="pix8")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "scored" / "results.json").read_text())
    assert record["results"]["bih"]["center"]["pix8_l1_hole"] != record["results"]["telea"]["center"]["pix8_l1_hole"]


def test_the_manifest_may_come_from_the_export_folder(files, tmp_path):
    results = _results_copy(files, tmp_path)
    os.remove(results / "manifest.json")
    res = _score(files, tmp_path / "a", "--results", f"outside={results}", metrics="pix8")
    assert res.exit_code == 2 and "no manifest.json" in res.output and "--protocol" in res.output
    assert not (tmp_path / "a").exists()
    res = _score(files, tmp_path / "b", "--results", f"outside={results}", "--protocol", files["export"],
                 metrics="pix8")
    assert res.exit_code == 0, res.output


# ---------------------------------------------------------------------------------------------------------------------
# Bad results folders: a named error before any image is inpainted and before anything is written.

def _fails_before_work(res, outdir, *needles):
    assert res.exit_code == 2, res.output
    assert "img/s" not in res.output and "Traceback" not in res.output and not outdir.exists(), res.output
    for needle in needles:
        assert needle in res.output, (needle, res.output)


def test_missing_file(files, tmp_path):
    results = _results_copy(files, tmp_path)
    os.remove(results / "free-form-small" / "00003.png")
    res = _score(files, tmp_path / "o", "--results", f"outside={results}")
    _fails_before_work(res, tmp_path / "o", "1 missing file(s)", os.path.join("free-form-small", "00003.png"))


def test_extra_file(files, tmp_path):
    results = _results_copy(files, tmp_path)
    shutil.copyfile(results / "center" / "00000.png", results / "center" / "00000 copy.png")
    res = _score(files, tmp_path / "o", "--results", f"outside={results}")
    _fails_before_work(res, tmp_path / "o", "1 extra file(s)", os.path.join("center", "00000 copy.png"))


def test_wrong_size_file(files, tmp_path):
    results = _results_copy(files, tmp_path)
    PIL.Image.new("RGB", (16, 16)).save(results / "center" / "00002.png")
    res = _score(files, tmp_path / "o", "--results", f"outside={results}")
    _fails_before_work(res, tmp_path / "o", os.path.join("center", "00002.png"), "16x16 pixels, expected 32x32")


@pytest.mark.parametrize("content", [b"not a png", b"truncated"])
def test_unreadable_file(files, tmp_path, content):
    results = _results_copy(files, tmp_path)
    path = results / "center" / "00004.png"
    data = path.read_bytes()
    path.write_bytes(content if content != b"truncated" else data[: len(data) // 2])
    res = _score(files, tmp_path / "o", "--results", f"outside={results}")
    _fails_before_work(res, tmp_path / "o", os.path.join("center", "00004.png"), "unreadable")


def test_manifest_of_another_protocol(files, tmp_path):
    results = _results_copy(files, tmp_path)
    res = _export(files, tmp_path / "seed1", "--seed", 1)
    assert res.exit_code == 0, res.output
    shutil.copyfile(tmp_path / "seed1" / "manifest.json", results / "manifest.json")
    res = _score(files, tmp_path / "o", "--results", f"outside={results}")
    _fails_before_work(res, tmp_path / "o", str(results), "exported under protocol", "seed 1 (run: 0)")
    # The run's own settings decide: the right manifest with another seed, count or data is refused too.
    res = _score(files, tmp_path / "o", "--results", f"outside={files['telea']}", "--seed", 1)
    _fails_before_work(res, tmp_path / "o", "seed 0 (run: 1)", "the masks of free-form-small")
    res = _score(files, tmp_path / "o", "--results", f"outside={files['telea']}", metrics="pix6")
    _fails_before_work(res, tmp_path / "o", "num_items 8 (run: 6)")
    other_zip = make_zip(tmp_path / "other.zip", NUM_IMAGES, 32, seed=4)
    res = _invoke("--results", f"outside={files['telea']}", "--data", other_zip, "--mask", ",".join(SPECS),
                  "--metrics", "pix8", "--device", "cpu", "--outdir", tmp_path / "o")
    _fails_before_work(res, tmp_path / "o", "the validation images (pixels hash")


def test_not_a_folder_and_not_a_manifest(files, tmp_path):
    res = _score(files, tmp_path / "o", "--results", f"outside={tmp_path / 'nowhere'}")
    _fails_before_work(res, tmp_path / "o", "--results outside=", "nowhere: no such folder")
    results = _results_copy(files, tmp_path)
    (results / "manifest.json").write_text("{}")
    res = _score(files, tmp_path / "o", "--results", f"outside={results}")
    _fails_before_work(res, tmp_path / "o", "manifest.json is not a protocol manifest")
    res = _score(files, tmp_path / "o", "--protocol", files["export"])
    _fails_before_work(res, tmp_path / "o", "give --results NAME=DIR too")


# ---------------------------------------------------------------------------------------------------------------------
# The docs' table script, with a given network (training is its slow part and is tested elsewhere).

@pytest.mark.slow
def test_thesis_table_script_prints_one_row_per_method(tmp_path):
    from test_metrics_cli import _tiny_snapshot

    from benchmarks import thesis_table

    snap = _tiny_snapshot(tmp_path / "network-snapshot-000000.pt")
    res = CliRunner().invoke(thesis_table.main, ["--outdir", str(tmp_path / "out"), "--network", str(snap)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = [line.split(" | ")[0].lstrip("| ") for line in res.output.splitlines() if line.startswith("| ")]
    assert rows == ["method", "CoModGAN tiny", "Telea", "Navier-Stokes", "PatchMatch", "FSR (fast)", "ShiftMap",
                    "Criminisi", "Biharmonic (--results)"]
    assert "composited with the known pixels" in res.output and "given with --network" in res.output
