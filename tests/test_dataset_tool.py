"""dataset_tool.py: mixed formats, EXIF, gray/RGBA, corrupt files, held-out split, atomic writes, reader round trip."""

import io
import json
import os
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from data.dataset import ImageDataset
from data.image_io import ImageReadError, decode_image_rgb, read_image_rgb, read_mask_file
from training import networks

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _halves(w, h, left=RED, right=BLUE):
    arr = np.zeros([h, w, 3], dtype=np.uint8)
    arr[:, : w // 2], arr[:, w // 2 :] = left, right
    return PIL.Image.fromarray(arr)


def _save_exif_rotated(path):
    """A 20x10 (WxH) JPEG, left half red, whose EXIF orientation 6 says 'rotate 90 degrees clockwise to view'."""
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    _halves(20, 10).save(path, format="jpeg", quality=95, exif=exif.tobytes())


@pytest.fixture()
def source(tmp_path):
    """A folder of 8 usable images in five formats and modes, one corrupt PNG and one non-image file."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    PIL.Image.fromarray(rng.integers(0, 256, [30, 40, 3], dtype=np.uint8)).save(src / "a_rgb.png")
    PIL.Image.fromarray(rng.integers(0, 256, [40, 30, 3], dtype=np.uint8)).save(src / "b.jpg")
    PIL.Image.fromarray(rng.integers(0, 256, [32, 32, 3], dtype=np.uint8)).save(src / "sub" / "c.webp")
    PIL.Image.fromarray(rng.integers(0, 256, [24, 24, 3], dtype=np.uint8)).save(src / "sub" / "d.BMP")
    PIL.Image.fromarray(np.full([32, 32], 77, dtype=np.uint8), "L").save(src / "e_gray.png")
    rgba = np.zeros([32, 32, 4], dtype=np.uint8)
    rgba[:, :16] = (0, 255, 0, 255)  # Left half opaque green, right half fully transparent.
    PIL.Image.fromarray(rgba, "RGBA").save(src / "f_rgba.png")
    _save_exif_rotated(src / "g_exif.jpg")
    PIL.Image.fromarray(rng.integers(0, 256, [16, 16, 3], dtype=np.uint8)).save(src / "h_small.png")
    good = (src / "a_rgb.png").read_bytes()
    (src / "sub" / "z_corrupt.png").write_bytes(good[: len(good) // 2])  # Truncated mid-stream.
    (src / "notes.txt").write_text("not an image")
    return src


def _run(args):
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args] + ["--workers", "1"])


def _sources(ds_path):
    with zipfile.ZipFile(ds_path) as zf:
        return json.loads(zf.read("dataset.json"))


def test_image_readers(tmp_path, source):
    img = read_image_rgb(str(source / "g_exif.jpg"))
    assert img.shape == (20, 10, 3)  # EXIF applied: 20 tall, 10 wide; the red left half is now on top.
    assert img[:8, :, 0].mean() > 200 and img[12:, :, 2].mean() > 200
    gray = read_image_rgb(str(source / "e_gray.png"))
    assert gray.dtype == np.uint8 and np.all(gray == 77)
    rgba = read_image_rgb(str(source / "f_rgba.png"))
    assert np.all(rgba[:, :16] == (0, 255, 0)) and np.all(rgba[:, 16:] == 255)  # Transparent -> white.
    with pytest.raises(ImageReadError, match="z_corrupt.png: cannot decode image"):
        read_image_rgb(str(source / "sub" / "z_corrupt.png"))
    with pytest.raises(ImageReadError, match="missing.png: image file does not exist"):
        read_image_rgb(str(tmp_path / "missing.png"))
    with pytest.raises(ImageReadError, match="notes.txt: cannot decode"):
        decode_image_rgb((source / "notes.txt").read_bytes(), name=str(source / "notes.txt"))
    hole = np.zeros([8, 8], dtype=np.uint8)
    hole[2:4] = 255
    PIL.Image.fromarray(hole).save(tmp_path / "m.png")
    white = read_mask_file(str(tmp_path / "m.png"))
    assert white.dtype == np.float32 and white.sum() == 48 and np.all(white[2:4] == 0)
    assert np.array_equal(read_mask_file(str(tmp_path / "m.png"), hole="black"), 1 - white)
    assert read_mask_file(str(tmp_path / "m.png"), resolution=4).shape == (4, 4)


def test_convert_mixed_folder_with_val_split(tmp_path, source):
    dest = tmp_path / "out" / "faces.zip"
    result = _run(["--source", source, "--dest", dest, "--resolution", 16, "--val-count", 3, "--seed", 1])
    assert result.exit_code == 0, result.output
    val = tmp_path / "out" / "faces-val.zip"
    assert f"wrote 5 training images (16x16) to {dest}" in result.output
    assert f"wrote 3 validation images to {val}" in result.output
    assert "skipped 1 unreadable file(s):" in result.output
    assert "sub/z_corrupt.png: cannot decode image" in result.output
    assert "1 image(s) were smaller than 16" in result.output  # g_exif (10 px wide); h_small is exactly 16.
    assert sorted(os.listdir(tmp_path / "out")) == ["faces-val.zip", "faces.zip"]  # No temp files left.

    train_meta, val_meta = _sources(dest), _sources(val)
    assert train_meta["labels"] is None and train_meta["split"] == "train" and val_meta["split"] == "val"
    train_src = {s for _a, s in train_meta["sources"]}
    val_src = {s for _a, s in val_meta["sources"]}
    usable = {"a_rgb.png", "b.jpg", "sub/c.webp", "sub/d.BMP", "e_gray.png", "f_rgba.png", "g_exif.jpg", "h_small.png"}
    assert not train_src & val_src and train_src | val_src == usable
    with zipfile.ZipFile(dest) as zf:  # The stylegan2-ada-pytorch layout: stored PNGs under 00000/.
        assert sorted(zf.namelist()) == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png",
                                         "00000/img00000003.png", "00000/img00000004.png", "dataset.json"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())

    for path, meta in ((dest, train_meta), (val, val_meta)):
        ds = ImageDataset(str(path), resolution=16)
        assert len(ds) == len(meta["sources"])
        for i in range(len(ds)):
            img = ds[i]
            assert img.shape == (3, 16, 16) and img.dtype == np.uint8
            name = dict(meta["sources"])[ds.fname(i)]
            if name == "e_gray.png":
                assert np.all(img == 77)
            if name == "g_exif.jpg":  # Upright 10x20, center crop keeps rows 5..15: red on top, blue below.
                assert img[0, :6].mean() > 180 and img[2, :6].mean() < 60
                assert img[2, 10:].mean() > 180 and img[0, 10:].mean() < 60


def test_split_is_deterministic_and_seeded(tmp_path, source):
    def val_sources(seed, name):
        dest = tmp_path / f"{name}.zip"
        assert _run(["--source", source, "--dest", dest, "--resolution", 8, "--val-count", 3, "--seed", seed]
                    ).exit_code == 0
        return sorted(s for _a, s in _sources(tmp_path / f"{name}-val.zip")["sources"])

    first = val_sources(0, "a")
    assert len(first) == 3 and first == val_sources(0, "b")
    assert first != val_sources(5, "c")


def test_folder_dest_matches_zip_dest_and_zip_source(tmp_path, source):
    assert _run(["--source", source, "--dest", tmp_path / "z.zip", "--resolution", 8]).exit_code == 0
    assert _run(["--source", source, "--dest", tmp_path / "f", "--resolution", 8]).exit_code == 0
    assert _run(["--source", tmp_path / "z.zip", "--dest", tmp_path / "zz", "--resolution", 8]).exit_code == 0
    dz, df, dzz = (ImageDataset(str(tmp_path / n)) for n in ("z.zip", "f", "zz"))
    assert len(dz) == len(df) == len(dzz) == 8
    assert all(np.array_equal(dz[i], df[i]) and np.array_equal(dz[i], dzz[i]) for i in range(8))
    assert os.path.isfile(tmp_path / "f" / "00000" / "img00000007.png")


def test_lanczos_downscale_is_antialiased():
    checker = (np.indices([64, 64]).sum(axis=0) % 2 * 255).astype(np.uint8)
    buf = io.BytesIO()
    PIL.Image.fromarray(checker, "L").save(buf, format="png")
    img, upscaled = dataset_tool.prepare_image(buf.getvalue(), "checker", 16, center_crop=True)
    assert img.shape == (16, 16, 3) and not upscaled
    assert abs(float(img.mean()) - 127.5) < 3 and img.std() < 10  # Nearest or no filter would alias to 0/255.


def test_no_center_crop_skips_non_square_and_max_images(tmp_path, source):
    result = _run(["--source", source, "--dest", tmp_path / "o.zip", "--resolution", 8, "--no-center-crop"])
    assert result.exit_code == 0
    assert "a_rgb.png: image is 40x30, not square (use --center-crop)" in result.output
    assert "g_exif.jpg: image is 10x20, not square" in result.output
    result = _run(["--source", source, "--dest", tmp_path / "m.zip", "--resolution", 32, "--max-images", 3])
    assert "wrote 3 training images" in result.output and "were upscaled" in result.output


def test_refuses_existing_dest_unless_forced(tmp_path, source):
    dest = tmp_path / "d.zip"
    dest.write_bytes(b"old")
    result = _run(["--source", source, "--dest", dest, "--resolution", 8])
    assert result.exit_code == 2 and f"error: --dest {dest} already exists" in result.output
    assert dest.read_bytes() == b"old"
    result = _run(["--source", source, "--dest", source, "--resolution", 8, "--force"])
    assert result.exit_code == 2 and "would overwrite --source" in result.output and (source / "b.jpg").exists()
    assert _run(["--source", source, "--dest", dest, "--resolution", 8, "--force"]).exit_code == 0
    assert len(ImageDataset(str(dest))) == 8


def test_bad_options(tmp_path, source):
    r = _run(["--source", tmp_path / "none", "--dest", tmp_path / "x.zip", "--resolution", 8])
    assert r.exit_code == 2 and "none: --source path does not exist" in r.output
    r = _run(["--source", source, "--dest", tmp_path / "x.zip", "--resolution", 12])
    assert r.exit_code == 2 and "not a power of two" in r.output
    r = _run(["--source", source, "--dest", tmp_path / "x.zip", "--resolution", 2048])  # past what the networks train
    assert r.exit_code == 2 and "from 4 to 1024" in r.output
    assert dataset_tool.MAX_RESOLUTION == networks.MAX_RESOLUTION
    (tmp_path / "afile").write_text("x")
    r = _run(["--source", source, "--dest", tmp_path / "afile" / "x.zip", "--resolution", 8])
    assert r.exit_code == 2 and f"{tmp_path / 'afile'} is a file" in r.output and "Traceback" not in r.output
    r = _run(["--source", source, "--dest", tmp_path / "x.zip", "--resolution", 8, "--val-count", 9])
    assert r.exit_code == 2 and "--val-count 9: must be below the number of source images (9)" in r.output
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    r = _run(["--source", tmp_path / "docs", "--dest", tmp_path / "x.zip", "--resolution", 8])
    assert r.exit_code == 2 and "no images" in r.output
    assert not os.path.exists(tmp_path / "x.zip")


def test_never_writes_a_half_archive(tmp_path, source, monkeypatch):
    real = dataset_tool._process
    calls = []

    def interrupted(job):
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(dataset_tool, "_process", interrupted)
    for dest in (tmp_path / "out" / "a.zip", tmp_path / "out" / "a"):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            dataset_tool.convert_dataset(str(source), str(dest), 8, val_count=2)
        assert os.listdir(tmp_path / "out") == []  # Neither DEST, nor DEST-val, nor a temp file.

    corrupt_only = tmp_path / "bad"
    corrupt_only.mkdir()
    (corrupt_only / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    r = _run(["--source", corrupt_only, "--dest", tmp_path / "out" / "b.zip", "--resolution", 8])
    assert r.exit_code == 2 and "no train image could be converted" in r.output and "x.png" in r.output
    assert os.listdir(tmp_path / "out") == []


def test_worker_pool_gives_identical_archive(tmp_path, source):
    dataset_tool.convert_dataset(str(source), str(tmp_path / "one.zip"), 8, workers=1)
    dataset_tool.convert_dataset(str(source), str(tmp_path / "two.zip"), 8, workers=2)
    with zipfile.ZipFile(tmp_path / "one.zip") as a, zipfile.ZipFile(tmp_path / "two.zip") as b:
        assert a.namelist() == b.namelist()
        assert all(a.read(n) == b.read(n) for n in a.namelist())
