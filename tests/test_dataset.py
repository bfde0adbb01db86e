"""Dataset reader: zip and folder agree, subsets and flips, per-process zip handles, errors that name the file."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from data import image_io
from data.dataset import DatasetError, ImageDataset
from dnnlib import UserError


def _png_bytes(arr):
    buf = io.BytesIO()
    PIL.Image.fromarray(arr).save(buf, format="png")
    return buf.getvalue()


def _images(n=6, res=16, seed=0):
    return [np.random.default_rng([seed, i]).integers(0, 256, [res, res, 3], dtype=np.uint8) for i in range(n)]


def _archive_name(i):
    return f"{i:08d}"[:5] + f"/img{i:08d}.png"  # The stylegan2-ada-pytorch layout.


def _write_zip(path, files):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _write_folder(path, files):
    for name, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    return path


@pytest.fixture()
def datasets(tmp_path):
    images = _images()
    files = {_archive_name(i): _png_bytes(img) for i, img in enumerate(images)}
    files["dataset.json"] = json.dumps({"labels": None}).encode()
    return images, _write_zip(tmp_path / "faces.zip", files), _write_folder(str(tmp_path / "faces"), files)


def test_zip_and_folder_agree_with_written_pixels(datasets):
    images, zpath, fpath = datasets
    dz, df = ImageDataset(str(zpath)), ImageDataset(fpath, resolution=16)
    for ds in (dz, df):
        assert len(ds) == 6 and ds.resolution == 16 and ds.num_channels == 3 and ds.image_shape == [3, 16, 16]
        assert ds.name == "faces"
    assert dz.path == str(zpath)
    for i in range(6):
        a, b = dz[i], df[i]
        assert a.dtype == np.uint8 and a.shape == (3, 16, 16)
        assert np.array_equal(a, b) and np.array_equal(a, images[i].transpose(2, 0, 1))


def test_pillow_fallback_matches_pyspng(datasets, monkeypatch):
    _images_, zpath, _ = datasets
    with_spng = [ImageDataset(zpath)[i] for i in range(3)]
    monkeypatch.setattr(image_io, "pyspng", None)
    assert all(np.array_equal(a, ImageDataset(zpath)[i]) for i, a in enumerate(with_spng))


def test_xflip_doubles_with_mirrored_copies(datasets):
    _, zpath, _ = datasets
    ds = ImageDataset(zpath, xflip=True)
    assert len(ds) == 12
    for i in range(6):
        assert np.array_equal(ds[i + 6], ds[i][:, :, ::-1]) and not ds.is_flipped(i) and ds.is_flipped(i + 6)
        assert ds.fname(i) == ds.fname(i + 6) == _archive_name(i)


def test_max_size_subset_is_deterministic_and_stylegan2_compatible(tmp_path):
    files = {f"img{i:03d}.png": _png_bytes(img) for i, img in enumerate(_images(n=20, res=8))}
    path = _write_folder(str(tmp_path / "d"), files)
    a = ImageDataset(path, max_size=5, random_seed=3)
    b = ImageDataset(path, max_size=5, random_seed=3)
    c = ImageDataset(path, max_size=5, random_seed=4)
    names = [a.fname(i) for i in range(len(a))]
    assert len(a) == 5 and names == [b.fname(i) for i in range(5)] and names == sorted(names)
    assert names != [c.fname(i) for i in range(5)]
    expected = np.arange(20)
    np.random.RandomState(3).shuffle(expected)  # stylegan2-ada-pytorch's rule: same seed, same subset.
    assert names == [f"img{k:03d}.png" for k in sorted(expected[:5])]
    assert len(ImageDataset(path, max_size=50)) == 20
    assert len(ImageDataset(path, max_size=5, xflip=True)) == 10


def test_zip_handle_reopened_per_process(datasets, monkeypatch):
    _, zpath, _ = datasets
    ds = ImageDataset(zpath)
    first = ds[0]
    handle = ds._source._zip
    assert handle is not None
    clone = pickle.loads(pickle.dumps(ds))  # What a spawned worker receives: no open handle.
    assert clone._source._zip is None and np.array_equal(clone[0], first)
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # As seen from a forked worker.
    assert np.array_equal(ds[1], ImageDataset(zpath)[1]) and ds._source._zip is not handle


def test_dataloader_workers(datasets):
    _, zpath, _ = datasets
    ds = ImageDataset(zpath)
    ds[0]  # Open the zip in the parent first: the forked workers must not reuse its handle.
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = torch.cat(list(loader))
    assert batches.shape == (6, 3, 16, 16) and batches.dtype == torch.uint8
    assert all(np.array_equal(batches[i].numpy(), ds[i]) for i in range(6))


def test_missing_empty_and_non_image_paths(tmp_path):
    with pytest.raises(DatasetError, match="nope.zip: dataset path does not exist"):
        ImageDataset(str(tmp_path / "nope.zip"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: the dataset dir is empty"):
        ImageDataset(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="the dataset zip is empty"):
        ImageDataset(str(_write_zip(tmp_path / "e.zip", {})))
    docs = _write_zip(tmp_path / "docs.zip", {"readme.txt": b"hi", "dataset.json": b"{}"})
    with pytest.raises(DatasetError, match=r"docs.zip: no image files among its 2 file\(s\)"):
        ImageDataset(str(docs))
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(DatasetError, match="must be a folder or a .zip archive"):
        ImageDataset(str(tmp_path / "notes.txt"))
    assert issubclass(DatasetError, UserError)


def test_resolution_mismatch_names_file(datasets):
    _, zpath, fpath = datasets
    with pytest.raises(DatasetError, match=r"faces.zip/00000/img00000000.png: image is 16x16, expected .* 32x32"):
        ImageDataset(str(zpath), resolution=32)
    with pytest.raises(DatasetError, match=r"img00000000.png: image is 16x16"):
        ImageDataset(fpath, resolution=64)


@pytest.mark.parametrize("shape,problem", [
    ((8, 8), r"1 channel\(s\), expected 3"),
    ((8, 8, 4), r"4 channel\(s\), expected 3"),
    ((8, 12, 3), "12x8, not square"),
])
def test_bad_first_image(tmp_path, shape, problem):
    arr = np.zeros(shape, dtype=np.uint8)
    path = _write_zip(tmp_path / "bad.zip", {"a/x.png": _png_bytes(arr)})
    with pytest.raises(DatasetError, match=f"bad.zip/a/x.png: .*{problem}"):
        ImageDataset(str(path))


def test_inconsistent_later_image_names_file(tmp_path):
    files = {"a.png": _png_bytes(_images(1, 8)[0]), "b.png": _png_bytes(_images(1, 16)[0])}
    ds = ImageDataset(_write_folder(str(tmp_path / "mixed"), files))
    ds[0]
    with pytest.raises(DatasetError, match=r"b.png: image shape \[3, 16, 16\] .* differs from .* \[3, 8, 8\]"):
        ds[1]


def test_corrupt_image_names_file(tmp_path):
    files = {"a.png": _png_bytes(_images(1, 8)[0]), "b.png": b"\x89PNG\r\n\x1a\nbroken", "c.jpg": b"nope"}
    ds = ImageDataset(_write_folder(str(tmp_path / "c"), files))
    with pytest.raises(DatasetError, match="b.png: cannot decode"):
        ds[1]
    with pytest.raises(DatasetError, match="c.jpg: cannot decode"):
        ds[2]
