"""The evaluation protocol as files (`calc_metrics.py --export-protocol DIR`): for every item that a comparison run
scores, the image, its mask (white = hole) and the masked input as PNGs, and manifest.json with the protocol, the
item list and the protocol hash, so that another method's own code can run on exactly our items.

The protocol hash is the sha256 of the protocol's settings (resolution, seed, items per mask protocol, the specs and
their folders) together with the pixels of every image the items use and of every mask. A run computes it from its
own --data/--mask/--seed/--metrics; `--results` (metrics/results_reader.py) accepts only completions exported under
the same hash, and any difference in images, masks or settings changes it.

Layout of DIR:
    manifest.json
    <protocol folder>/images/<item>.png   the validation image of the item (RGB)
    <protocol folder>/masks/<item>.png    its mask, 8-bit gray: 255 (white) = hole, 0 = known
    <protocol folder>/masked/<item>.png   the image with the hole filled with grey MASKED_FILL: what our inpainters get
Completions of another method go to `<results DIR>/<protocol folder>/<item>.png`, same names.
"""

import hashlib
import json
import os
import re

import numpy as np
import PIL.Image

from dnnlib import UserError
from metrics.eval_set import EvalItems, item_seed

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "comodgan-eval-protocol"
MANIFEST_VERSION = 1
FILE_KINDS = ("images", "masks", "masked")
MASKED_FILL = 128  # the hole's value in masked/: 0 in [-1, 1], rounded as eval_set.to_uint8 rounds it
HASHED_FIELDS = ("resolution", "seed", "num_items", "num_images", "data_sha256", "protocols")  # in protocol_hash


def protocol_folder_names(specs):
    """{spec: folder name}: the spec with every run of characters other than letters, digits, '.', '-' turned into
    '_' (`free-form:0.2-0.4` -> `free-form_0.2-0.4`), numbered when two specs give the same name."""
    names, taken = {}, set()
    for spec in specs:
        base = re.sub(r"[^A-Za-z0-9.-]+", "_", spec).strip("_.")[:80] or "masks"
        name, k = base, 2
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        taken.add(name)
        names[spec] = name
    return names


def item_name(index, num_items):
    """File name of item `index`: zero-padded to at least 5 digits, so that names sort in item order."""
    return f"{index:0{max(5, len(str(num_items - 1)))}d}.png"


def hole_map(mask):
    """float mask [H, W] (1 = known) -> uint8 [H, W] with 255 = hole, as the masks/ PNGs store it."""
    return np.where(np.asarray(mask) < 0.5, 255, 0).astype(np.uint8)


def masked_input(image_hwc, mask):
    """uint8 [H, W, 3] with the hole set to MASKED_FILL (the masked/ PNGs)."""
    return np.where((np.asarray(mask) >= 0.5)[..., None], image_hwc, np.uint8(MASKED_FILL)).astype(np.uint8)


def _walk(dataset, specs, seed, num_items, on_item=None):
    """Draw every item of every protocol (the comparison run's EvalItems) and hash images and masks; calls
    on_item(folder, name, image uint8 [H, W, 3], mask float [H, W]) per item when given. Returns the manifest."""
    resolution = dataset.resolution
    folders = protocol_folder_names(specs)
    num_hashed = min(num_items, len(dataset))
    data_hash = hashlib.sha256()
    protocols = []
    for p, spec in enumerate(specs):
        items = EvalItems(dataset, spec, resolution, seed)
        masks_hash = hashlib.sha256()
        entries = []
        for i in range(num_items):
            need_image = on_item is not None or (p == 0 and i < num_hashed)
            if need_image:
                _i, image, mask = items[i]
                image = image.transpose(1, 2, 0)
            else:
                image, mask = None, _mask_only(spec, resolution, seed, i)
            mask = np.asarray(mask, np.float32).reshape(resolution, resolution)
            if p == 0 and i < num_hashed:
                data_hash.update(np.ascontiguousarray(image).tobytes())
            masks_hash.update(hole_map(mask).tobytes())
            name = item_name(i, num_items)
            entries.append(dict(name=name, image_index=i % len(dataset), image_file=dataset.fname(i % len(dataset)),
                                hole_ratio=float(1.0 - mask.mean(dtype=np.float64)),
                                search_seed=item_seed(seed, i)))
            if on_item is not None:
                on_item(folders[spec], name, image, mask)
        protocols.append(dict(spec=spec, folder=folders[spec], masks_sha256=masks_hash.hexdigest(),
                              mean_hole_ratio=float(np.mean([e["hole_ratio"] for e in entries])), items=entries))
    manifest = dict(format=MANIFEST_FORMAT, version=MANIFEST_VERSION, protocol_hash=None,
                    data=str(dataset.path), resolution=int(resolution), seed=int(seed), num_items=int(num_items),
                    num_images=len(dataset), data_sha256=data_hash.hexdigest(), protocols=protocols,
                    files=dict(images="<folder>/images/<name>: the validation image (RGB)",
                               masks="<folder>/masks/<name>: 8-bit gray, 255 (white) = hole, 0 (black) = known",
                               masked=f"<folder>/masked/<name>: the image with the hole set to grey {MASKED_FILL}",
                               completions="<results DIR>/<folder>/<name>: one RGB completion per item, same size; "
                                           "it is composited with the known pixels before scoring"))
    manifest["protocol_hash"] = protocol_hash(manifest)
    return manifest


def _mask_only(spec, resolution, seed, index):
    from data.masks import eval_mask

    return eval_mask(spec, resolution, seed, index)


def hashed_settings(manifest):
    """The part of a manifest that protocol_hash covers (the item list follows from it)."""
    out = {key: manifest[key] for key in HASHED_FIELDS if key != "protocols"}
    out["protocols"] = [dict(spec=p["spec"], folder=p["folder"], masks_sha256=p["masks_sha256"])
                        for p in manifest["protocols"]]
    return out


def protocol_hash(manifest):
    text = json.dumps(hashed_settings(manifest), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe_protocol(dataset, specs, seed, num_items):
    """The manifest of the run (dataset, mask specs, seed, items per protocol) without writing anything: decodes
    the first min(num_items, len(dataset)) images once and draws every mask."""
    return _walk(dataset, list(specs), int(seed), int(num_items))


def _save_png(path, array):
    PIL.Image.fromarray(array).save(path, format="png")


def export_protocol(outdir, dataset, specs, seed, num_items, metrics=(), progress=None):
    """Write every item's image, mask and masked input and manifest.json into `outdir` (absent or empty); returns
    the manifest. `metrics` (the run's --metrics, which decide num_items) is recorded for the reader;
    progress(done, total) is called after each item when given."""
    if os.path.isdir(outdir) and os.listdir(outdir):
        raise UserError(f"--export-protocol {outdir}: the folder is not empty (give a new or empty folder)")
    folders = protocol_folder_names(specs)
    for folder in folders.values():
        for kind in FILE_KINDS:
            os.makedirs(os.path.join(outdir, folder, kind), exist_ok=True)
    total, done = len(specs) * num_items, [0]

    def write(folder, name, image, mask):
        _save_png(os.path.join(outdir, folder, "images", name), image)
        _save_png(os.path.join(outdir, folder, "masks", name), hole_map(mask))
        _save_png(os.path.join(outdir, folder, "masked", name), masked_input(image, mask))
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    manifest = _walk(dataset, list(specs), int(seed), int(num_items), on_item=write)
    manifest["metrics"] = list(metrics)
    with open(os.path.join(outdir, MANIFEST_NAME), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest
