"""Import of the official CoModGAN TensorFlow pickles: a restricted unpickler and the variable-to-parameter mapping.

The official release files (e.g. co-mod-gan-ffhq-9-025000.pkl) are pickles of a tuple (G, D, Gs) of
`dnnlib.tflib.network.Network` objects. Each pickled state is a dict with `version`, `name`, `static_kwargs`,
`components` (sub-network states), `build_module_src`, `build_func_name` and `variables`, a list of
(TF variable name, numpy value). Loading one with plain `pickle` would exec `build_module_src`; here the only
globals that resolve are a stub for the Network class (it keeps the state dict and nothing else) and numpy's
array-reconstruction functions, so no code from the file ever runs.

Layouts and gains: TF stores conv weights [k, k, in, out] and dense weights [in, out], unscaled; at runtime
it multiplies weights by lrmul / sqrt(fan_in) and biases by lrmul (equalized learning rate). Our layers store
the same unscaled values and apply the same gains (our modulation layers also add TF's `mod_bias + 1` at run
time), so values are copied after a transpose, except: the 2x-upsampling convs (Conv0_up) are flipped spatially
(TF's upsample_conv_2d flips its kernel for the transposed convolution, ours does not), and the per-layer noise
inputs [1, 1, H, W] become our [H, W] constant-noise buffers. G_main's `lod` is not used.

The paper's ablations (G built with style_mod=False or cond_mod=False, official run_training.py
--disable-style-mod / --disable-cond-mod) are read from the generator's static_kwargs: their modulation weights
are narrower (the modulation vector concatenates only the parts switched on), the rest is the same.

Converted networks compute in float32 like the original (num_fp16_res=0, no clamp) unless fp16 is asked for.
"""

import io
import os
import pickle
import re

import numpy as np
import torch

from converters import mapping_problems
from dnnlib import UserError
from training.checkpoint import SNAPSHOT_FORMAT, SNAPSHOT_VERSION


class TFImportError(UserError):
    """An official TensorFlow pickle is unreadable, refers to something we refuse, or does not match our model."""


# ----------------------------------------------------------------------------------------------------------------
# Restricted unpickling.

class TFNetworkState:
    """Plain stand-in for dnnlib.tflib.network.Network: keeps the pickled state dict, executes nothing."""

    state = {}  # replaced by __setstate__; an object pickled without state then fails validation cleanly

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"Network state is a {type(state).__name__}, expected a dict")
        self.state = state

    @property
    def name(self):
        return self.state.get("name")

    @property
    def version(self):
        return self.state.get("version")

    @property
    def static_kwargs(self):
        return dict(self.state.get("static_kwargs") or {})

    @property
    def components(self):
        return dict(self.state.get("components") or {})

    @property
    def variables(self):
        return list(self.state.get("variables") or [])


def _numpy_core(submodule, attr):
    # numpy 2 moved numpy.core to numpy._core; pickles name either, depending on the numpy that wrote them.
    import importlib
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{attr}")


def _latin1_encode(text, encoding="latin1"):
    # Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow exactly that and nothing else.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as encode(str, 'latin1')")
    return text.encode("latin1")


def _allowed_globals():
    reconstruct = _numpy_core("multiarray", "_reconstruct")
    scalar = _numpy_core("multiarray", "scalar")
    frombuffer = _numpy_core("numeric", "_frombuffer")
    table = {("dnnlib.tflib.network", "Network"): TFNetworkState,
             ("numpy", "ndarray"): np.ndarray,
             ("numpy", "dtype"): np.dtype,
             ("_codecs", "encode"): _latin1_encode}
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{package}.multiarray", "scalar")] = scalar
        table[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the Network stub and numpy's array reconstruction; any other global is refused."""

    _table = None

    def find_class(self, module, name):
        if _RestrictedUnpickler._table is None:
            _RestrictedUnpickler._table = _allowed_globals()
        found = self._table.get((module, name))
        if found is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        raise _RefusedGlobal(f"persistent id {pid!r}")


class _RefusedGlobal(pickle.UnpicklingError):
    pass


def load_tf_pickle(source):
    """Read an official pickle (path or bytes) into three TFNetworkState objects (G, D, Gs); runs no file code."""
    label = "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            data = _RestrictedUnpickler(io.BytesIO(source), encoding="latin1").load()
        else:
            with open(source, "rb") as f:
                data = _RestrictedUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise TFImportError(f"{label}: file not found") from None
    except IsADirectoryError:
        raise TFImportError(f"{label}: is a directory, expected a .pkl file") from None
    except OSError as err:
        raise TFImportError(f"{label}: cannot read ({err.strerror or err})") from None
    except _RefusedGlobal as err:
        raise TFImportError(f"{label}: refusing to load: the pickle references {err}, which is not part of an "
                            f"official CoModGAN network pickle (only dnnlib.tflib.network.Network and numpy "
                            f"arrays are allowed)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError, MemoryError, RecursionError) as err:
        raise TFImportError(f"{label}: not a readable TensorFlow network pickle "
                            f"({type(err).__name__}: {str(err)[:200]})") from None
    if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(x, TFNetworkState) for x in data)):
        raise TFImportError(f"{label}: expected a pickled tuple (G, D, Gs) of TensorFlow networks, "
                            f"found {type(data).__name__}")
    for net, role in zip(data, ("G", "D", "Gs")):
        _validate_state(net, f"{label} [{role}]")
    return data


def _validate_state(net, label):
    state = net.state
    if state.get("version") not in (2, 3, 4):
        raise TFImportError(f"{label}: Network state version {state.get('version')!r} is not supported (expected 2-4)")
    for key, kind in (("static_kwargs", dict), ("components", dict), ("variables", list)):
        if not isinstance(state.get(key, kind()), kind):
            raise TFImportError(f"{label}: Network state {key} is a {type(state[key]).__name__}, "
                                f"expected a {kind.__name__}")
    for item in net.variables:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TFImportError(f"{label}: Network variables must be (name, value) pairs, found {type(item).__name__}")
        name, value = item
        if not isinstance(name, str):
            raise TFImportError(f"{label}: variable name {name!r} is not a string")
        value = np.asarray(value)
        if value.dtype.kind not in "fiub":
            raise TFImportError(f"{label}: variable {name} has non-numeric dtype {value.dtype}")
    for key, comp in net.components.items():
        if not isinstance(comp, TFNetworkState):
            raise TFImportError(f"{label}: component {key!r} is not a Network")
        _validate_state(comp, f"{label}/{key}")


def collect_variables(net):
    """{full name: float32 array} over a network and its components ('mapping/Dense0/weight', ...)."""
    out = {}
    def visit(prefix, node):
        for name, value in node.variables:
            out[prefix + name] = np.asarray(value, dtype=np.float32)
        for key, comp in node.components.items():
            visit(prefix + key + "/", comp)
    visit("", net)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Static kwargs -> our constructor kwargs.

# Official build-function options whose value must be the one our architecture implements.
_FIXED_KWARGS = {
    "label_size": 0, "pix2pix": False, "fmap_min": 1, "fmap_decay": 1.0, "architecture": None,
    "nonlinearity": "lrelu", "mapping_nonlinearity": "lrelu", "resample_kernel": [1, 3, 3, 1],
    "normalize_latents": True, "noise_injection": True, "dtype": "float32", "mbstd_num_features": 1,
}
# The paper's ablation switches (official run_training.py --disable-style-mod / --disable-cond-mod set them in
# G's kwargs, which G_main hands to both components): read, not assumed; absent = True, the official default.
_MODULATION_KWARGS = ("style_mod", "cond_mod")
# Options that only steer TF graph building or inference, not the weights' meaning.
_IGNORED_KWARGS = {
    "randomize_noise", "fused_modconv", "truncation_psi", "truncation_cutoff", "truncation_psi_val",
    "truncation_cutoff_val", "style_mixing_prob", "dlatent_broadcast", "mapping_func", "synthesis_func",
    "is_training", "is_validation", "return_dlatents",
}
_SHAPE_KWARGS = {
    "resolution", "num_channels", "fmap_base", "fmap_max", "latent_size", "dlatent_size", "mapping_layers",
    "mapping_fmaps", "mapping_lrmul", "dlatent_avg_beta", "dropout_rate", "mbstd_group_size", *_MODULATION_KWARGS,
}


def _check_static_kwargs(kwargs, label, architecture):
    unknown = sorted(set(kwargs) - set(_FIXED_KWARGS) - _IGNORED_KWARGS - _SHAPE_KWARGS)
    if unknown:
        raise TFImportError(f"{label}: unknown static_kwargs {', '.join(unknown)}; this importer handles the "
                            f"official CoModGAN image-completion networks only")
    fixed = dict(_FIXED_KWARGS, architecture=architecture)
    for key, expected in fixed.items():
        if key in kwargs and not _same(kwargs[key], expected):
            raise TFImportError(f"{label}: static_kwargs {key}={kwargs[key]!r} is not supported "
                                f"(our {'generator' if architecture == 'skip' else 'discriminator'} "
                                f"implements {key}={expected!r})")
    resolution = kwargs.get("resolution", 1024)  # 1024 is the official default when the kwarg is absent
    if not isinstance(resolution, (int, np.integer)) or resolution < 32 or resolution & (resolution - 1):
        raise TFImportError(f"{label}: static_kwargs resolution={resolution!r} is not a power of two >= 32")


def _same(value, expected):
    if isinstance(expected, list):
        return list(np.asarray(value).ravel()) == expected if value is not None else False
    return value == expected


def _modulation_kwargs(tf_G, label):
    """style_mod / cond_mod of the synthesis that the pickle holds (it is what reads them), checked against G's
    own kwargs; both off is refused, like our Generator refuses it."""
    places = {label: tf_G.static_kwargs}
    if "synthesis" in tf_G.components:
        places[f"{label}/synthesis"] = tf_G.components["synthesis"].static_kwargs
    found = {}
    for key in _MODULATION_KWARGS:
        values = {where: kw.get(key, True) for where, kw in places.items()}  # absent: the official default
        for where, value in values.items():
            if not isinstance(value, (bool, np.bool_)):
                raise TFImportError(f"{where}: static_kwargs {key}={value!r} is not a boolean")
        if len({bool(v) for v in values.values()}) > 1:
            raise TFImportError(f"{label}: static_kwargs {key} differs between G and its synthesis "
                                f"({', '.join(f'{w}: {v}' for w, v in values.items())})")
        found[key] = bool(values[label])
    if not any(found.values()):
        raise TFImportError(f"{label}: static_kwargs style_mod=False and cond_mod=False: a generator without any "
                            f"modulation input is not one of the paper's networks or ablations, and our Generator "
                            f"needs at least one of them")
    return found


def generator_kwargs(tf_G, label="G", fp16=False):
    """Our Generator kwargs from the official G's static_kwargs (resolution, fmap_base, style_mod, ...)."""
    kw = tf_G.static_kwargs
    _check_static_kwargs(kw, label, "skip")
    for key, comp in tf_G.components.items():
        _check_static_kwargs(comp.static_kwargs, f"{label}/{key}", "skip")
    modulation = _modulation_kwargs(tf_G, label)
    beta = kw.get("dlatent_avg_beta", 0.995)
    return dict(
        z_dim=int(kw.get("latent_size", 512)), w_dim=int(kw.get("dlatent_size", 512)),
        img_resolution=int(kw.get("resolution", 1024)), img_channels=int(kw.get("num_channels", 3)),
        channel_base=int(kw.get("fmap_base", 16384)), channel_max=int(kw.get("fmap_max", 512)),
        num_fp16_res=4 if fp16 else 0, conv_clamp=256 if fp16 else None,
        mapping_kwargs=dict(num_layers=int(kw.get("mapping_layers", 8)),
                            layer_features=int(kw.get("mapping_fmaps", 512)),
                            lr_multiplier=float(kw.get("mapping_lrmul", 0.01)),
                            w_avg_beta=float(beta) if beta is not None else 1.0),
        dropout_rate=float(kw.get("dropout_rate", 0.5)), **modulation,
    )


def discriminator_kwargs(tf_D, label="D", fp16=False):
    """Our Discriminator kwargs from the official D's static_kwargs."""
    kw = tf_D.static_kwargs
    _check_static_kwargs(kw, label, "resnet")
    return dict(
        img_resolution=int(kw.get("resolution", 1024)), img_channels=int(kw.get("num_channels", 3)),
        channel_base=int(kw.get("fmap_base", 16384)), channel_max=int(kw.get("fmap_max", 512)),
        num_fp16_res=4 if fp16 else 0, conv_clamp=256 if fp16 else None,
        mbstd_group_size=int(kw.get("mbstd_group_size", 4)), mbstd_num_channels=int(kw.get("mbstd_num_features", 1)),
    )


# ----------------------------------------------------------------------------------------------------------------
# Variable names: our state_dict key -> official TF variable (full name, components joined with '/').

_MODCONV_LEAF = {"weight": "weight", "bias": "bias", "affine.weight": "mod_weight", "affine.bias": "mod_bias",
                 "noise_strength": "noise_strength"}


def _synthesis_layer(scope, leaf, noise_index):
    if leaf == "noise_const":
        return f"synthesis/noise{noise_index}"
    if leaf not in _MODCONV_LEAF:
        return None
    return f"synthesis/{scope}/{_MODCONV_LEAF[leaf]}"


def _g_rule(name):
    """TF variable for one of our Generator state_dict keys, or None when nothing official corresponds."""
    rules = [
        (r"mapping\.fc(\d+)\.(weight|bias)", lambda i, p: f"mapping/Dense{i}/{p}"),
        (r"mapping\.w_avg", lambda: "dlatent_avg"),
        (r"encoder\.b4\.conv\.(weight|bias)", lambda p: f"synthesis/E_4x4/Conv/{p}"),
        (r"encoder\.b4\.fc\.(weight|bias)", lambda p: f"synthesis/E_4x4/Dense0/{p}"),
        (r"encoder\.b(\d+)\.fromrgb\.(weight|bias)", lambda r, p: f"synthesis/E_{r}x{r}/FromRGB/{p}"),
        (r"encoder\.b(\d+)\.conv0\.(weight|bias)", lambda r, p: f"synthesis/E_{r}x{r}/Conv0/{p}"),
        (r"encoder\.b(\d+)\.conv1\.(weight|bias)", lambda r, p: f"synthesis/E_{r}x{r}/Conv1_down/{p}"),
        (r"synthesis\.b4\.fc\.(weight|bias)", lambda p: f"synthesis/G_4x4/Dense/{p}"),
        (r"synthesis\.b4\.conv\.(.+)", lambda leaf: _synthesis_layer("G_4x4/Conv", leaf, 0)),
        (r"synthesis\.b(\d+)\.conv0\.(.+)",
         lambda r, leaf: _synthesis_layer(f"G_{r}x{r}/Conv0_up", leaf, 2 * _log2(r) - 5)),
        (r"synthesis\.b(\d+)\.conv1\.(.+)",
         lambda r, leaf: _synthesis_layer(f"G_{r}x{r}/Conv1", leaf, 2 * _log2(r) - 4)),
        (r"synthesis\.b(\d+)\.torgb\.(weight|bias|affine\.weight|affine\.bias)",
         lambda r, leaf: f"synthesis/G_{r}x{r}/ToRGB/{_MODCONV_LEAF[leaf]}"),
    ]
    return _apply_rules(rules, name)


def _d_rule(name):
    """TF variable for one of our Discriminator state_dict keys, or None."""
    rules = [
        (r"b4\.conv\.(weight|bias)", lambda p: f"4x4/Conv/{p}"),
        (r"b4\.fc\.(weight|bias)", lambda p: f"4x4/Dense0/{p}"),
        (r"b4\.out\.(weight|bias)", lambda p: f"Output/{p}"),
        (r"b(\d+)\.fromrgb\.(weight|bias)", lambda r, p: f"{r}x{r}/FromRGB/{p}"),
        (r"b(\d+)\.conv0\.(weight|bias)", lambda r, p: f"{r}x{r}/Conv0/{p}"),
        (r"b(\d+)\.conv1\.(weight|bias)", lambda r, p: f"{r}x{r}/Conv1_down/{p}"),
        (r"b(\d+)\.skip\.weight", lambda r: f"{r}x{r}/Skip/weight"),
    ]
    return _apply_rules(rules, name)


def _apply_rules(rules, name):
    for pattern, fn in rules:
        match = re.fullmatch(pattern, name)
        if match:
            return fn(*match.groups())
    return None


def _log2(r):
    return int(r).bit_length() - 1


def _to_ours(tf_name, value):
    """TF layout -> ours: conv [k, k, in, out] -> [out, in, k, k] (Conv0_up also flipped), dense [in, out] ->
    [out, in], noise input [1, 1, H, W] -> [H, W]; scalars and vectors unchanged."""
    if re.fullmatch(r"(.*/)?noise\d+", tf_name):
        return value[0, 0]
    if value.ndim == 4:
        if tf_name.endswith("/Conv0_up/weight"):
            # TF's upsample_conv_2d flips the kernel before its transposed convolution; ours does not.
            value = value[::-1, ::-1]
        return value.transpose(3, 2, 0, 1)
    if value.ndim == 2:
        return value.T
    return value


# ----------------------------------------------------------------------------------------------------------------
# Conversion.

# Official variables that hold nothing our networks need: G_main's progressive-growing level (always 0 here).
_UNUSED_TF_VARS = {"lod"}


def _template(cls, kwargs):
    # Only names and shapes are needed; building on the CPU costs a second at 512 and keeps to the public API.
    return cls(**kwargs)


def convert_state(module, tf_vars, rule, label):
    """Map every persistent parameter/buffer of `module` to exactly one TF variable; returns a state dict.

    Raises TFImportError naming every missing variable, every variable left over, every shape mismatch.
    """
    state, used = {}, {}
    missing, unmapped, mismatched, reused = [], [], [], []
    for name, ref in module.state_dict().items():
        tf_name = rule(name)
        if tf_name is None:
            unmapped.append(name)
            continue
        if tf_name in used:
            reused.append(f"{tf_name} (for {used[tf_name]} and {name})")
            continue
        if tf_name not in tf_vars:
            missing.append(f"{tf_name} (for {name} {list(ref.shape)})")
            continue
        used[tf_name] = name
        value = _to_ours(tf_name, tf_vars[tf_name])
        if list(value.shape) != list(ref.shape):
            mismatched.append(f"{tf_name} {list(tf_vars[tf_name].shape)} -> {name} needs {list(ref.shape)}")
            continue
        # np.array, not ascontiguousarray: the latter turns the 0-d noise strengths into 1-d arrays.
        state[name] = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))
    unknown = sorted(set(tf_vars) - set(used) - _UNUSED_TF_VARS)
    problems = mapping_problems.describe((
        ("missing official variables", missing), ("unknown official variables", unknown),
        ("shape mismatches", mismatched), ("our parameters without an official variable", unmapped),
        ("official variables claimed twice", reused)))
    if problems:
        raise TFImportError(f"{label}: the pickle does not match the CoModGAN architecture: {problems}")
    return state


def convert_generator(tf_G, label="G", fp16=False):
    """(G_kwargs, state_dict) of our Generator holding the official generator's weights."""
    from training.networks import Generator  # The loader part of this module works without the networks.

    kwargs = generator_kwargs(tf_G, label, fp16=fp16)
    state = convert_state(_template(Generator, kwargs), collect_variables(tf_G), _g_rule, label)
    return kwargs, state


def convert_discriminator(tf_D, label="D", fp16=False):
    """(D_kwargs, state_dict) of our Discriminator holding the official discriminator's weights."""
    from training.networks import Discriminator

    kwargs = discriminator_kwargs(tf_D, label, fp16=fp16)
    state = convert_state(_template(Discriminator, kwargs), collect_variables(tf_D), _d_rule, label)
    return kwargs, state


def convert_tf_pickle(source, fp16=False):
    """Official (G, D, Gs) pickle -> snapshot dict in our format (G from G, G_ema from Gs, D from D).

    `fp16=True` lets the highest 4 resolutions run in float16 on CUDA (activations clamped at 256); the default
    keeps float32 everywhere, which is what the official networks computed.
    """
    label = os.fspath(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>"
    tf_G, tf_D, tf_Gs = load_tf_pickle(source)
    G_kwargs, G_state = convert_generator(tf_G, f"{label} [G]", fp16=fp16)
    Gs_kwargs, Gs_state = convert_generator(tf_Gs, f"{label} [Gs]", fp16=fp16)
    D_kwargs, D_state = convert_discriminator(tf_D, f"{label} [D]", fp16=fp16)
    if Gs_kwargs != G_kwargs:
        raise TFImportError(f"{label}: G and Gs were built with different static_kwargs")
    if D_kwargs["img_resolution"] != G_kwargs["img_resolution"]:
        raise TFImportError(f"{label}: D resolution {D_kwargs['img_resolution']} differs from G resolution "
                            f"{G_kwargs['img_resolution']}")
    return {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "G_kwargs": G_kwargs, "D_kwargs": D_kwargs,
            "G": G_state, "G_ema": Gs_state, "D": D_state,
            "imported_from": label}
