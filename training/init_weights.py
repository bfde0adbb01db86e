"""Starting a new training run from a network file (--init): reading it with the loader the caller hands in,
checking that its networks fit the run's, recording where the weights came from, and copying them in.

The file is any network file inference.loading.read_network_file reads: our snapshot (.pt), an official TF pickle
(.pkl: G, D, Gs) or the PyTorch port's generator (.pth: G_ema only). G and G_ema (with their w average and const
noise) come from the file; D too when the file has one, else D starts from its seeded random initialisation.
Everything else is new: kimg 0, fresh optimizers, a new run directory. This is stylegan2-ada-pytorch's
`--resume` (which loads G, D and G_ema into fresh networks and restarts the kimg count) and the official
`--resume-with-new-nets`, minus the official `--resume`'s kimg carried over from the file name.
"""

import inspect
import json
import os

from dnnlib import EasyDict, UserError
from dnnlib.provenance import file_sha256
from training.checkpoint import SNAPSHOT_KIND_GENERATOR, CheckpointError, snapshot_kind, state_dict_problem

FORMATS = {".pkl": "official TensorFlow pickle", ".pth": "PyTorch port generator"}  # else our snapshot



def _defaults(cls):
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _widths(kw, stages):
    from training.networks import channels_at

    return ",".join(str(channels_at(s, kw["channel_base"], kw["channel_max"])) for s in range(stages))


def architecture(kind, kwargs):
    """What of G_kwargs / D_kwargs (`kind` 'G' or 'D') decides the weights' shapes, as {name: value}: resolution,
    image channels, z and w widths, mapping layers and width, the modulation inputs (style_mod, cond_mod), feature
    maps nf(0), nf(1), ... (nf(s) at 2**(s+1)). The rest (float16 layers, clamping, dropout, lr multiplier) is
    the run's choice."""
    from training.networks import Discriminator, Generator, MappingNetwork, check_resolution

    kw = {**_defaults(Generator if kind == "G" else Discriminator), **kwargs}
    log2 = check_resolution(int(kw["img_resolution"]))
    arch = {"resolution": kw["img_resolution"], "image channels": kw["img_channels"]}
    if kind == "G":
        mapping = {**_defaults(MappingNetwork), **(kw.get("mapping_kwargs") or {})}
        arch.update({"z_dim": kw["z_dim"], "w_dim": kw["w_dim"], "mapping layers": mapping["num_layers"],
                     "mapping width": mapping["layer_features"], "style_mod": kw["style_mod"],
                     "cond_mod": kw["cond_mod"]})
    else:
        arch["minibatch-stddev features"] = kw["mbstd_num_channels"]
    arch["feature maps nf(0..)"] = _widths(kw, log2)
    return arch


def check_fits(path, kind, file_kwargs, run_kwargs, cfg):
    """UserError naming both sides unless the file's network has the shapes of the run's."""
    theirs, ours = architecture(kind, file_kwargs), architecture(kind, run_kwargs)
    diffs = [f"{name} {theirs[name]} (file) vs {ours[name]} (run)" for name in ours if theirs[name] != ours[name]]
    if diffs:
        who = "generator" if kind == "G" else "discriminator"
        raise UserError(f"--init {path}: the file's {who} does not fit this run's: {'; '.join(diffs)}. "
                        f"The file's: {json.dumps(theirs)}; this run's (--cfg {cfg}, resolution of --data): "
                        f"{json.dumps(ours)}. Pick the --cfg and data resolution the file was trained with "
                        f"(the official 512x512 releases: --cfg auto on 512x512 images)")


def load_init(c, reader):
    """Read --init `c.init` with `reader` (path -> snapshot dict; train.py passes
    inference.loading.read_network_file) and check it against c.G_kwargs / c.D_kwargs.

    Returns EasyDict(G, G_ema, D (None when the file has no discriminator), source) of CPU state dicts; `source`
    (path, sha256, format, ...) is what the run records as its config's init_source.
    """
    path = c.init
    if reader is None:
        raise UserError(f"--init {path}: no network reader was given to the training loop (train.py passes "
                        f"inference.loading.read_network_file)")
    if not os.path.isfile(path):
        raise UserError(f"--init {path}: file not found")
    try:
        data = reader(path)
    except UserError as err:  # the reader names the file; say which option it came from
        raise UserError(f"--init: {err}") from None
    check_fits(path, "G", data["G_kwargs"], c.G_kwargs, c.cfg)
    has_D = snapshot_kind(data) != SNAPSHOT_KIND_GENERATOR and "D" in data
    if has_D:
        check_fits(path, "D", data["D_kwargs"], c.D_kwargs, c.cfg)
    source = {"path": os.path.abspath(path), "sha256": file_sha256(path),
              "format": FORMATS.get(os.path.splitext(path)[1].lower(), "comodgan-pytorch snapshot"),
              "D": "from the file" if has_D else "fresh: the file holds no discriminator"}
    if data.get("imported_from"):
        source["imported_from"] = os.fspath(data["imported_from"])
    if "progress" in data:
        source["kimg"] = data["progress"].get("kimg")
    # A generator-only file (port .pth) has G_ema alone: the trained G starts from it too.
    G = data["G_ema"] if snapshot_kind(data) == SNAPSHOT_KIND_GENERATOR else data["G"]
    return EasyDict(G=G, G_ema=data["G_ema"], D=data["D"] if has_D else None, source=source)


def apply_init(state, init, log):
    """Copy the file's weights into the freshly built networks of `state` (before the first step) and log it."""
    path = init.source["path"]
    nets = [("G", state.G, init.G), ("G_ema", state.G_ema, init.G_ema)]
    if init.D is not None:
        nets.append(("D", state.D, init.D))
    for name, net, weights in nets:
        try:
            net.load_state_dict(weights)
        except RuntimeError as err:
            raise CheckpointError(f"--init {path}: its {name} weights do not fit this run's networks "
                                  f"({state_dict_problem(err)})") from None
    d_line = "D from the file" if init.D is not None else \
        "D starts from scratch (the file holds no discriminator)"
    log.print(f"starting from --init {path} ({init.source['format']}, sha256 {init.source['sha256'][:16]}...): "
              f"G, G_ema and w average from the file; {d_line}; kimg 0, fresh optimizers")


def inherited_options(resume_data):
    """Options a resumed run takes from the run it continues when that run started from --init: its
    `init_source`, so that it keeps the constant EMA (and anything else --init decides) and its record."""
    if resume_data is None:
        return None
    source = resume_data.get("training_options", {}).get("init_source")
    return {"init_source": source} if source else None
