"""The demo's embedded face images: the 100 face crops that scikit-image ships (`skimage.data.lfw_subset`, 25x25
gray) written as PNG files for dataset_tool.py, and the held-out archive exported back to PNG files for
generate.py.

Nothing is downloaded: the faces are installed with scikit-image. dataset_tool.py does the rest exactly as for
a user's own photos (Lanczos upscale to 32x32, gray -> RGB, a seeded held-out split into `NAME-val.zip`).
"""

import json
import os
import zipfile

import numpy as np
import PIL.Image

from data.dataset import ImageDataset

NUM_FACES = 100  # lfw_subset holds 200 images: the first 100 are faces, the rest are not.


def load_faces():
    """The 100 faces as uint8 [100, 25, 25] gray, as shipped (floats in [0, 1] rounded to 8 bits)."""
    from skimage.data import lfw_subset

    faces = np.asarray(lfw_subset()[:NUM_FACES], dtype=np.float64)
    return np.clip(np.rint(faces * 255.0), 0, 255).astype(np.uint8)


def write_face_pngs(folder):
    """Write face-000.png ... face-099.png (gray, 25x25) into `folder`; returns the list of paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, face in enumerate(load_faces()):
        paths.append(os.path.join(folder, f"face-{i:03d}.png"))
        PIL.Image.fromarray(face, mode="L").save(paths[-1])
    return paths


def _source_names(archive):
    """{member: original file name} from the dataset.json that dataset_tool.py writes ({} if there is none)."""
    meta = {}
    if not zipfile.is_zipfile(archive):
        path = os.path.join(archive, "dataset.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
    else:
        with zipfile.ZipFile(archive) as zf:
            meta = json.loads(zf.read("dataset.json")) if "dataset.json" in zf.namelist() else {}
    return {member: source for member, source in meta.get("sources") or []}


def export_images(archive, folder):
    """Write every image of a dataset archive as a PNG file in `folder`, named after its source file when
    dataset.json records it (face-042.png), else after its member; returns the list of paths."""
    ds = ImageDataset(archive)
    sources = _source_names(archive)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(len(ds)):
        member = ds.fname(i)
        stem = os.path.splitext(os.path.basename(sources.get(member, member)))[0]
        paths.append(os.path.join(folder, f"{stem}.png"))
        PIL.Image.fromarray(ds[i].transpose(1, 2, 0)).save(paths[-1])
    ds.close()
    return paths
