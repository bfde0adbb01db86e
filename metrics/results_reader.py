"""Another method's completions as a row of the comparison (`calc_metrics.py --results NAME=DIR`): the folder is
checked against the run's protocol before any work, then read item by item like an inpainter's output.

DIR holds `<protocol folder>/<item>.png` for every item of the exported protocol (metrics/protocol_export.py) and
the export's manifest.json, copied into DIR or found in the export folder given with --protocol. The manifest must
carry the run's protocol hash; a missing, extra, unreadable or wrong-size file is a UserError naming it.
"""

import json
import os

import numpy as np
import PIL.Image
import torch

from dnnlib import UserError
from metrics.protocol_export import HASHED_FIELDS, MANIFEST_FORMAT, MANIFEST_NAME, hashed_settings

IMAGE_MODES = ("RGB", "RGBA", "L")  # 8-bit modes read as RGB; alpha is dropped
MAX_NAMED = 5  # problems listed by name in one error message


def split_label_arg(value, exists):
    """'LABEL=PATH' -> (LABEL, PATH); a plain PATH, or one for which `exists(value)` holds although it contains
    '=', -> (None, PATH). The rule of --network and --results alike."""
    value = str(value)
    if "=" in value and not exists(value):
        label, path = value.split("=", 1)
        if label.strip():
            return label.strip(), path
    return None, value


def split_results_arg(value):
    """'NAME=DIR' -> (NAME, DIR); a plain DIR (or an existing folder whose name holds '=') -> (its basename, DIR)."""
    name, folder = split_label_arg(value, os.path.isdir)
    return name or os.path.basename(os.path.normpath(folder)), folder


def _read_manifest(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f"{what}: cannot read {path} ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{what}: {path} is not a protocol manifest written by calc_metrics.py --export-protocol")
    missing = [key for key in (*HASHED_FIELDS, "protocol_hash") if key not in manifest]
    if missing:
        raise UserError(f"{what}: {path} lacks {', '.join(missing)} (export the protocol again)")
    return manifest


def find_manifest(results_dir, protocol_dir=None, what="--results"):
    """(path, manifest): DIR/manifest.json, else the one in the --protocol export folder; a UserError saying how to
    provide it when neither exists."""
    for folder in (results_dir, protocol_dir):
        if folder is not None and os.path.isfile(os.path.join(folder, MANIFEST_NAME)):
            path = os.path.join(folder, MANIFEST_NAME)
            return path, _read_manifest(path, what)
    raise UserError(f"{what}: no {MANIFEST_NAME} in {results_dir}; copy the one of the exported protocol into it, "
                    "or name the export folder with --protocol EXPORT_DIR")


def _differences(theirs, ours):
    """Human-readable differences between two manifests' hashed settings."""
    a, b = hashed_settings(theirs), hashed_settings(ours)
    out = []
    for key in HASHED_FIELDS:
        if key == "protocols" or a[key] == b[key]:
            continue
        if key == "data_sha256":
            out.append(f"the validation images (pixels hash {a[key][:12]}, run: {b[key][:12]})")
        else:
            out.append(f"{key} {a[key]} (run: {b[key]})")
    specs_a, specs_b = [p["spec"] for p in a["protocols"]], [p["spec"] for p in b["protocols"]]
    if specs_a != specs_b:
        out.append(f"masks {', '.join(specs_a)} (run: {', '.join(specs_b)})")
    else:
        out += [f"the masks of {pa['spec']} (same spec, other pixels)" for pa, pb in zip(a["protocols"], b["protocols"])
                if pa != pb]
    return out


def _named(problems, kind):
    shown = ", ".join(problems[:MAX_NAMED]) + (f" and {len(problems) - MAX_NAMED} more" if len(problems) > MAX_NAMED
                                               else "")
    return f"{len(problems)} {kind} ({shown})"


class Completions:
    """Stored completions of one method: check(expected manifest) before the run, then called by the evaluation
    loop with the items of a batch (eval_set passes `items` and `mask_spec` to inpainters with `takes_items`)."""

    z_dim = 0  # no latent
    takes_items = True  # looked up by item index, not computed from the masked image

    def __init__(self, name, folder, protocol_dir=None):
        self.label = name
        self.folder = folder
        self.what = f"--results {name}={folder}"
        if not os.path.isdir(folder):
            raise UserError(f"{self.what}: no such folder")
        self.manifest_path, self.manifest = find_manifest(folder, protocol_dir, self.what)
        self._paths = {}  # (spec, item index) -> file, once checked

    def check(self, expected):
        """UserError unless the manifest has the run's protocol hash and DIR holds exactly one readable image of the
        run's resolution per item."""
        if self.manifest["protocol_hash"] != expected["protocol_hash"]:
            diff = "; ".join(_differences(self.manifest, expected)) or "settings"
            raise UserError(f"{self.what}: {self.manifest_path} was exported under protocol "
                            f"{self.manifest['protocol_hash'][:12]}, this run's is {expected['protocol_hash'][:12]} "
                            f"(it differs in: {diff}); export the protocol with this run's --data, --mask, --seed "
                            "and --metrics, run the method on it, or score with the export's settings")
        wanted = {}
        for proto in expected["protocols"]:
            for index, item in enumerate(proto["items"]):
                wanted[os.path.join(proto["folder"], item["name"])] = (proto["spec"], index)
        found = self._files()
        missing = sorted(set(wanted) - found)
        extra = sorted(found - set(wanted))
        problems = ([_named(missing, "missing file(s)")] if missing else []) + \
                   ([_named(extra, "extra file(s)")] if extra else [])
        if problems:
            raise UserError(f"{self.what}: {'; '.join(problems)}; expected one <protocol folder>/<item>.png per item "
                            f"as listed in {self.manifest_path}")
        bad = [f"{rel}: {problem}" for rel in sorted(wanted)
               if (problem := self._check_image(os.path.join(self.folder, rel), expected["resolution"]))]
        if bad:
            raise UserError(f"{self.what}: {_named(bad, 'bad image(s)')}")
        self._paths = {key: os.path.join(self.folder, rel) for rel, key in wanted.items()}

    def _files(self):
        """Relative paths of every file under DIR except the manifest at its top."""
        out = set()
        for root, _dirs, files in os.walk(self.folder):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), self.folder)
                if rel != MANIFEST_NAME:
                    out.add(rel)
        return out

    @staticmethod
    def _check_image(path, resolution):
        """None if `path` is a readable 8-bit image of resolution x resolution pixels, else the problem."""
        try:
            with PIL.Image.open(path) as img:
                size, mode = img.size, img.mode
                img.verify()  # chunk checksums: a truncated or corrupt file fails here, without decoding it
        except (OSError, SyntaxError, ValueError) as err:
            return f"unreadable ({err})"
        if size != (resolution, resolution):
            return f"{size[0]}x{size[1]} pixels, expected {resolution}x{resolution}"
        if mode not in IMAGE_MODES:
            return f"image mode {mode}, expected 8-bit RGB (or RGBA, gray)"
        return None

    def _load(self, path):
        try:
            with PIL.Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise UserError(f"{self.what}: {path}: cannot read ({err})") from None

    def __call__(self, img, mask, z=None, items=None, mask_spec=None):
        """The completions of `items` under protocol `mask_spec` as float [N, 3, H, W] in [-1, 1] on img's device
        (the evaluation loop composites them with the known pixels)."""
        del mask, z  # the method has already run; its output is on disk
        if not self._paths:
            raise RuntimeError("Completions.check must run before the completions are read")
        out = np.stack([self._load(self._paths[(mask_spec, int(i))]) for i in items]).transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=img.device, dtype=torch.float32) / 127.5 - 1
