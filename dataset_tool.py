"""Command line: turn a folder or zip of images into a training dataset (stylegan2-ada-pytorch zip/folder layout).

    python dataset_tool.py --source ~/data/celeba_hq/images --dest ~/datasets/celebahq-256.zip \\
        --resolution 256 --val-count 2000 --seed 0

Each image is center-cropped to a square (unless --no-center-crop), resized with Lanczos to RxR, converted to
RGB (EXIF orientation applied; grayscale and RGBA converted, alpha over white) and stored as PNG under
`00000/img00000000.png`, `00000/img00000001.png`, ... with a `dataset.json` ({"labels": null, ...}) as
stylegan2-ada-pytorch writes them. --val-count K holds out K images chosen by --seed into a second archive next
to DEST (`NAME-val.zip` or `NAME-val/`): the first K readable images of a seeded shuffle, none of which is in
the training archive. Unreadable files are skipped and listed at the end; archives are written under a
temporary name in DEST's folder and renamed into place only when complete.
"""

import functools
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import zipfile

import click
import numpy as np
import PIL.Image
from tqdm import tqdm

from data.image_io import FileSource, decode_image_rgb, is_image_name
from dnnlib import UserError, check_output_path, default_file_mode


def list_source_images(source):
    """(FileSource, sorted image names) for a folder (recursive) or zip; UserError when there is none."""
    src = FileSource(source, what="--source")
    names = [n for n in src.list_files() if is_image_name(n) and not _is_junk(n)]
    if not names:
        raise UserError(f"--source {source}: no images (.png, .jpg, .jpeg, .webp, .bmp) found in this {src.kind}")
    return src, names


def _is_junk(name):
    """macOS archive metadata ('__MACOSX/', '._x.jpg') looks like images but is not."""
    return name.startswith("__MACOSX/") or os.path.basename(name).startswith("._")


def val_dest_path(dest):
    """The held-out archive next to DEST: 'a/name.zip' -> 'a/name-val.zip', 'a/name' -> 'a/name-val'."""
    dest = os.path.normpath(dest)
    root, ext = os.path.splitext(dest)
    return f"{root}-val{ext}" if ext.lower() == ".zip" else f"{dest}-val"


def prepare_image(data, name, resolution, center_crop):
    """Encoded bytes -> (uint8 [R, R, 3], upscaled?); ValueError for a non-square image without center crop."""
    img = decode_image_rgb(data, name=name)
    h, w = img.shape[:2]
    upscaled = min(h, w) < resolution
    if center_crop:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[top : top + s, left : left + s]
    elif h != w:
        raise ValueError(f"image is {w}x{h}, not square (use --center-crop)")
    if img.shape[0] != resolution:
        # Pillow's Lanczos widens its kernel with the scale factor, so large downscales are antialiased.
        img = np.asarray(PIL.Image.fromarray(img).resize((resolution, resolution), PIL.Image.LANCZOS))
    return img, upscaled


def _encode_png(img, compress_level):
    buf = io.BytesIO()
    PIL.Image.fromarray(img, "RGB").save(buf, format="png", compress_level=compress_level, optimize=False)
    return buf.getvalue()


def _process(job):
    """Worker: (source, name, resolution, center_crop, compress_level) -> (png bytes | None, error, upscaled)."""
    src, name, resolution, center_crop, compress_level = job
    try:
        img, upscaled = prepare_image(src.read(name), name, resolution, center_crop)
        return _encode_png(img, compress_level), None, upscaled
    except Exception as err:  # Any failure on one file (a Pillow plugin bug included) skips that file only.
        return None, str(err).replace(f"{name}: ", "") or type(err).__name__, False


class ArchiveWriter:
    """Writes a dataset zip or folder under a temporary name in the destination's folder; commit() renames it
    into place (atomic for zips), abort() removes it. Nothing half-written ever appears under the final name."""

    def __init__(self, dest, force=False):
        self.dest = os.path.normpath(dest)
        self.is_zip = self.dest.lower().endswith(".zip")
        self.force = force
        check_output_path(self.dest, "--dest", "file" if self.is_zip else "folder")
        parent = os.path.dirname(os.path.abspath(self.dest))
        os.makedirs(parent, exist_ok=True)
        base = os.path.basename(self.dest)
        if self.is_zip:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
            os.close(fd)
            self._zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED)
        else:
            self.tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
        os.chmod(self.tmp, default_file_mode(directory=not self.is_zip))  # mkstemp/mkdtemp make owner-only files.
        self.names = []

    def add(self, name, data):
        if self.is_zip:
            self._zip.writestr(name, data)
        else:
            path = os.path.join(self.tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        self.names.append(name)

    def commit(self):
        if self.is_zip:
            self._zip.close()
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.dest)
            return
        trash = None
        if os.path.exists(self.dest):  # Only with --force (checked before any work); keep it until the swap.
            trash = tempfile.mkdtemp(prefix=f".{os.path.basename(self.dest)}.", suffix=".old",
                                     dir=os.path.dirname(os.path.abspath(self.dest)))
            os.replace(self.dest, os.path.join(trash, "old"))
        os.replace(self.tmp, self.dest)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def abort(self):
        if self.is_zip:
            self._zip.close()
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _archive_name(idx):
    idx_str = f"{idx:08d}"
    return f"{idx_str[:5]}/img{idx_str}.png"  # The stylegan2-ada-pytorch layout.


def _check_dest(path, force, what, source):
    real, src = os.path.realpath(path), os.path.realpath(source)
    if real == src or src.startswith(real + os.sep):
        raise UserError(f"{what} {path} would overwrite --source {source}; pick another destination")
    if os.path.exists(path) and not force:
        raise UserError(f"{what} {path} already exists; pick another name or pass --force to replace it")
    if os.path.exists(path) and os.path.isdir(path) == path.lower().endswith(".zip"):
        raise UserError(f"{what} {path} exists as a {'folder' if os.path.isdir(path) else 'file'}; cannot replace it")


def _image_results(src, names, resolution, center_crop, compress_level, workers):
    """Yield (png bytes | None, error, upscaled) for names in order, in a process pool when workers > 1."""
    jobs = ((src, name, resolution, center_crop, compress_level) for name in names)
    if workers <= 1:
        yield from map(_process, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_process, jobs, chunksize=4)


def convert_dataset(source, dest, resolution, max_images=None, center_crop=True, val_count=0, seed=0,
                    compress_level=0, workers=1, force=False):
    """Build DEST (and DEST-val when val_count > 0). Returns a dict of what was written and skipped.

    The validation images are the first `val_count` readable images in a shuffle of the (sorted) source list
    by np.random.RandomState(seed), stored in that order; all other readable images go to DEST in sorted order.
    """
    src, names = list_source_images(source)
    if max_images is not None:
        names = names[:max_images]
    if not 0 <= val_count < len(names):
        raise UserError(f"--val-count {val_count}: must be below the number of source images ({len(names)})")
    _check_dest(dest, force, "--dest", source)
    val_dest = val_dest_path(dest) if val_count else None
    if val_dest:
        _check_dest(val_dest, force, "validation archive", source)
    writers = {"train": ArchiveWriter(dest, force)}
    if val_dest:
        writers["val"] = ArchiveWriter(val_dest, force)
    out = {"sources": {split: [] for split in writers}, "skipped": [], "upscaled": 0}
    convert = functools.partial(_convert_some, src, names, out, (resolution, center_crop, compress_level, workers))
    try:
        with tqdm(total=len(names), unit="img", desc="converting") as bar:
            done = set()
            if val_dest:
                order = np.random.RandomState(seed).permutation(len(names)).tolist()
                done = convert(order, writers["val"], "val", bar, stop_after=val_count)
            convert([k for k in range(len(names)) if k not in done], writers["train"], "train", bar)
        for split, writer in writers.items():
            if not out["sources"][split]:
                raise UserError(f"no {split} image could be converted (see the skipped files); nothing written")
            meta = {"labels": None, "split": split, "resolution": resolution, "sources": out["sources"][split]}
            writer.add("dataset.json", json.dumps(meta, indent=0).encode("utf-8"))
    except BaseException:
        for writer in writers.values():
            writer.abort()
        if out["skipped"]:
            _print_skipped(out["skipped"])
        raise
    for writer in writers.values():
        writer.commit()
    return {"dest": dest, "val_dest": val_dest, "num_train": len(out["sources"]["train"]),
            "num_val": len(out["sources"].get("val", [])), "skipped": out["skipped"], "upscaled": out["upscaled"]}


def _convert_some(src, names, out, settings, indices, writer, split, bar, stop_after=None):
    """Convert names[k] for k in indices (in that order) into writer; returns the indices consumed.

    Stops once `stop_after` images are stored; unreadable files are recorded in out['skipped'] and consumed."""
    consumed = set()
    results = _image_results(src, [names[k] for k in indices], *settings)
    try:
        for k, (png, error, upscaled) in zip(indices, results):
            consumed.add(k)
            bar.update(1)
            if png is None:
                out["skipped"].append((names[k], error))
                continue
            archive_name = _archive_name(len(out["sources"][split]))
            writer.add(archive_name, png)
            out["sources"][split].append([archive_name, names[k]])
            out["upscaled"] += int(upscaled)
            if stop_after is not None and len(out["sources"][split]) >= stop_after:
                break
    finally:
        results.close()  # Stops the worker pool now rather than at garbage collection.
    return consumed


def _print_skipped(skipped):
    print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
    for name, error in skipped:
        print(f"  {name}: {error}", file=sys.stderr)


MAX_RESOLUTION = 1024  # training.networks.MAX_RESOLUTION (a test pins it), not imported: that would load torch


def _power_of_two(_ctx, _param, value):
    # 4-16 make small test and baseline datasets; the networks train at 32-1024 (train.py says so for the rest).
    if value is not None and (value < 4 or value > MAX_RESOLUTION or value & (value - 1)):
        raise click.BadParameter(f"{value} is not a power of two from 4 to {MAX_RESOLUTION} (the networks double "
                                 f"the resolution per block, up to {MAX_RESOLUTION})")
    return value


@click.command()
@click.option("--source", required=True, metavar="PATH", help="Folder (searched recursively) or zip of images.")
@click.option("--dest", required=True, metavar="PATH", help="Output dataset: a path ending in .zip, or a folder.")
@click.option("--resolution", type=int, required=True, callback=_power_of_two, help="Output side R (power of 2).")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Use only the first N images (sorted).")
@click.option("--center-crop/--no-center-crop", default=True, show_default=True,
              help="Crop the largest centered square first; without it non-square images are skipped.")
@click.option("--val-count", type=click.IntRange(min=0), default=0, show_default=True,
              help="Hold out K readable images, picked by --seed, into NAME-val.zip / NAME-val/ (not in DEST).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the held-out split.")
@click.option("--compress-level", type=click.IntRange(0, 9), default=0, show_default=True,
              help="PNG compression (0 = stored, fastest to read, as stylegan2-ada-pytorch).")
@click.option("--workers", type=click.IntRange(min=1), default=min(8, os.cpu_count() or 1), show_default=True,
              help="Worker processes for decoding and resizing.")
@click.option("--force", is_flag=True, help="Replace DEST (and its -val archive) if they exist.")
def main(source, dest, resolution, max_images, center_crop, val_count, seed, compress_level, workers, force):
    """Convert SOURCE images into a dataset archive usable by train.py (and by stylegan2-ada-pytorch)."""
    try:
        res = convert_dataset(source, dest, resolution, max_images=max_images, center_crop=center_crop,
                              val_count=val_count, seed=seed, compress_level=compress_level, workers=workers,
                              force=force)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    print(f"wrote {res['num_train']} training images ({resolution}x{resolution}) to {res['dest']}")
    if res["val_dest"]:
        print(f"wrote {res['num_val']} validation images to {res['val_dest']} (held out with seed {seed})")
    if res["upscaled"]:
        print(f"warning: {res['upscaled']} image(s) were smaller than {resolution} and were upscaled", file=sys.stderr)
    if res["skipped"]:
        _print_skipped(res["skipped"])


if __name__ == "__main__":
    main()
