"""Test helper that writes pickles shaped exactly like the official CoModGAN TensorFlow release (G, D, Gs).

The variable names, shapes and creation order are derived here, independently of converters/tf_pickle.py, from
the official build functions (NVlabs-style `training/co_mod_gan.py`: G_main, G_mapping, G_synthesis_co_mod_gan,
D_co_mod_gan) and the state layout of `dnnlib.tflib.network.Network.__getstate__` (version 4).
"""

import contextlib
import pickle
import sys
import types

import numpy as np

# Source text stored in every fake network. If anything ever executed it, the marker file would appear.
EVIL_SRC_TEMPLATE = "open({path!r}, 'w').write('build_module_src was executed')\n"


# Static kwargs that the official run_training.py sets on G only (--disable-style-mod, --disable-cond-mod).
G_ONLY_KWARGS = ("style_mod", "cond_mod")


def nf_official(stage, fmap_base, fmap_max, fmap_min=1, fmap_decay=1.0):
    """Feature count of the official code: np.clip(int(fmap_base / 2**(stage*decay)), fmap_min, fmap_max)."""
    return int(np.clip(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_min, fmap_max))


def official_variables(resolution, num_channels=3, fmap_base=16384, fmap_max=512, latent_size=512,
                       dlatent_size=512, mapping_layers=8, mapping_fmaps=512, style_mod=True, cond_mod=True):
    """Variable (name, shape) lists of every official network, in TF creation order.

    Returns {'G': own, 'G/mapping': [...], 'G/synthesis': [...], 'D': [...]}; shapes in TF layout
    (conv [k, k, in, out], dense [in, out], scalars []). `style_mod` / `cond_mod` (the official ablation switches)
    set what the modulation vector of layer() and torgb() concatenates: [dlatent] and/or [x_global, 2*nf(1)];
    with neither, modulated_conv2d_layer gets y=None and creates no mod_weight / mod_bias.
    """
    log2 = int(np.log2(resolution))
    def nf(stage):
        return nf_official(stage, fmap_base, fmap_max)
    num_layers = log2 * 2 - 2
    mod = dlatent_size * bool(style_mod) + nf(1) * 2 * bool(cond_mod)
    c_in = num_channels + 1  # mask - 0.5 and the (masked) image

    own = [("lod", []), ("dlatent_avg", [dlatent_size])]
    mapping = []
    for i in range(mapping_layers):
        fin = latent_size if i == 0 else mapping_fmaps
        fout = dlatent_size if i == mapping_layers - 1 else mapping_fmaps
        mapping += [(f"Dense{i}/weight", [fin, fout]), (f"Dense{i}/bias", [fout])]

    syn = [(f"noise{i}", [1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)]) for i in range(num_layers - 1)]
    for res in range(log2, 2, -1):
        s = f"E_{2**res}x{2**res}"
        if res == log2:
            syn += [(f"{s}/FromRGB/weight", [1, 1, c_in, nf(res - 1)]), (f"{s}/FromRGB/bias", [nf(res - 1)])]
        syn += [(f"{s}/Conv0/weight", [3, 3, nf(res - 1), nf(res - 1)]), (f"{s}/Conv0/bias", [nf(res - 1)]),
                (f"{s}/Conv1_down/weight", [3, 3, nf(res - 1), nf(res - 2)]), (f"{s}/Conv1_down/bias", [nf(res - 2)])]
    syn += [("E_4x4/Conv/weight", [3, 3, nf(1), nf(1)]), ("E_4x4/Conv/bias", [nf(1)]),
            ("E_4x4/Dense0/weight", [nf(1) * 16, nf(1) * 2]), ("E_4x4/Dense0/bias", [nf(1) * 2]),
            ("G_4x4/Dense/weight", [nf(1) * 2, nf(1) * 16]), ("G_4x4/Dense/bias", [nf(1) * 16])]

    def modconv(scope, fin, fout, k, noise=True):
        out = [(f"{scope}/weight", [k, k, fin, fout])]
        if mod:
            out += [(f"{scope}/mod_weight", [mod, fin]), (f"{scope}/mod_bias", [fin])]
        if noise:
            out.append((f"{scope}/noise_strength", []))
        return out + [(f"{scope}/bias", [fout])]

    syn += modconv("G_4x4/Conv", nf(1), nf(1), 3) + modconv("G_4x4/ToRGB", nf(1), num_channels, 1, noise=False)
    for res in range(3, log2 + 1):
        s = f"G_{2**res}x{2**res}"
        syn += modconv(f"{s}/Conv0_up", nf(res - 2), nf(res - 1), 3)
        syn += modconv(f"{s}/Conv1", nf(res - 1), nf(res - 1), 3)
        syn += modconv(f"{s}/ToRGB", nf(res - 1), num_channels, 1, noise=False)

    disc = []
    for res in range(log2, 2, -1):
        s = f"{2**res}x{2**res}"
        if res == log2:
            disc += [(f"{s}/FromRGB/weight", [1, 1, c_in, nf(res - 1)]), (f"{s}/FromRGB/bias", [nf(res - 1)])]
        disc += [(f"{s}/Conv0/weight", [3, 3, nf(res - 1), nf(res - 1)]), (f"{s}/Conv0/bias", [nf(res - 1)]),
                 (f"{s}/Conv1_down/weight", [3, 3, nf(res - 1), nf(res - 2)]),
                 (f"{s}/Conv1_down/bias", [nf(res - 2)]),
                 (f"{s}/Skip/weight", [1, 1, nf(res - 1), nf(res - 2)])]
    disc += [("4x4/Conv/weight", [3, 3, nf(1) + 1, nf(1)]), ("4x4/Conv/bias", [nf(1)]),
             ("4x4/Dense0/weight", [nf(1) * 16, nf(0)]), ("4x4/Dense0/bias", [nf(0)]),
             ("Output/weight", [nf(0), 1]), ("Output/bias", [1])]
    return {"G": own, "G/mapping": mapping, "G/synthesis": syn, "D": disc}


def trainable_count(var_list):
    """Number of trainable scalars: everything except the noise inputs, lod and the tracked w average."""
    skip = ("lod", "dlatent_avg")
    return sum(int(np.prod(shape)) for name, shape in var_list
               if name not in skip and not (name.startswith("noise") and "/" not in name))


class FakeNetwork:
    """Stands in for dnnlib.tflib.network.Network when pickling; its state is the official __getstate__ dict."""

    def __init__(self, state):
        self._state = state

    def __getstate__(self):
        return self._state


@contextlib.contextmanager
def _official_class_name():
    # Pickle records a class by module and qualified name and checks that the name resolves back to it, so
    # the fake class is registered as dnnlib.tflib.network.Network for the duration of the dump only.
    saved = {name: sys.modules.get(name) for name in ("dnnlib.tflib", "dnnlib.tflib.network")}
    tflib = types.ModuleType("dnnlib.tflib")
    network = types.ModuleType("dnnlib.tflib.network")
    old_module, old_qualname = FakeNetwork.__module__, FakeNetwork.__qualname__
    FakeNetwork.__module__, FakeNetwork.__qualname__ = "dnnlib.tflib.network", "Network"
    network.Network = FakeNetwork
    tflib.network = network
    sys.modules["dnnlib.tflib"], sys.modules["dnnlib.tflib.network"] = tflib, network
    try:
        yield
    finally:
        FakeNetwork.__module__, FakeNetwork.__qualname__ = old_module, old_qualname
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def _values(var_list, rng):
    out = []
    for name, shape in var_list:
        if shape == []:
            # TF's session.run returns numpy scalars (not 0-d arrays) for scalar variables.
            value = np.float32(0.0 if name == "lod" else rng.normal(0, 0.3))
        elif name.endswith("/mod_bias"):
            value = rng.normal(0, 0.2, size=shape).astype(np.float32)
        else:
            value = rng.normal(0, 1, size=shape).astype(np.float32)
        out.append((name, value))
    return out


def _state(name, func, static_kwargs, variables, src, components=None):
    return {"version": 4, "name": name, "static_kwargs": dict(static_kwargs), "components": components or {},
            "build_module_src": src, "build_func_name": func, "variables": variables}


def make_official_states(resolution, seed=0, marker_path="/nonexistent/marker", drop=(), extra=(), **kwargs):
    """(G, D, Gs) as FakeNetwork objects with random values. `kwargs` become static_kwargs (fmap_base, ...).

    `drop` removes variables given as (network key, name) with keys 'G', 'G/mapping', 'G/synthesis', 'D';
    `extra` adds (network key, name, array) triples.
    """
    rng = np.random.default_rng(seed)
    static = dict(num_channels=3, resolution=resolution, label_size=0, pix2pix=False)
    static.update(kwargs)
    shape_kwargs = {k: v for k, v in static.items() if k in ("num_channels", "fmap_base", "fmap_max",
                    "latent_size", "dlatent_size", "mapping_layers", "mapping_fmaps", *G_ONLY_KWARGS)}
    names = official_variables(resolution, **shape_kwargs)
    src = EVIL_SRC_TEMPLATE.format(path=str(marker_path))

    def variables(key):
        vals = [(n, v) for n, v in _values(names[key], rng) if (key, n) not in drop]
        return vals + [(n, v) for k, n, v in extra if k == key]

    def generator(name):
        num_layers = int(np.log2(resolution)) * 2 - 2
        syn = FakeNetwork(_state("G_synthesis", "G_synthesis_co_mod_gan", static, variables("G/synthesis"), src))
        mapping = FakeNetwork(_state("G_mapping", "G_mapping", dict(static, dlatent_broadcast=num_layers),
                                     variables("G/mapping"), src))
        return FakeNetwork(_state(name, "G_main", static, variables("G"), src,
                                  components={"synthesis": syn, "mapping": mapping}))

    G = generator("G")
    # run_training.py puts the ablation switches into G's arguments only; D is built from its own.
    D_static = {k: v for k, v in static.items() if k not in G_ONLY_KWARGS}
    D = FakeNetwork(_state("D", "D_co_mod_gan", D_static, variables("D"), src))
    Gs = generator("Gs")
    return G, D, Gs


def dumps_official(obj, protocol=4):
    """Pickle bytes in which every FakeNetwork is recorded as dnnlib.tflib.network.Network."""
    with _official_class_name():
        return pickle.dumps(obj, protocol=protocol)


def write_official_pickle(path, resolution, protocol=4, **kwargs):
    """Write a (G, D, Gs) pickle with the official structure to `path`; returns the FakeNetwork tuple."""
    nets = make_official_states(resolution, **kwargs)
    with open(path, "wb") as f:
        f.write(dumps_official(nets, protocol=protocol))
    return nets


def variables_of(net, prefix=""):
    """Flatten a FakeNetwork tree into {full name: array}, components under 'key/'."""
    out = {prefix + name: value for name, value in net._state["variables"]}
    for key, comp in net._state["components"].items():
        out.update(variables_of(comp, prefix + key + "/"))
    return out
