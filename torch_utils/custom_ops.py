"""The one JIT builder and loader of our CUDA extension (ops_cuda/), with a warn-once fallback to the reference ops.

How it works: on the first op call with a CUDA tensor, `get_plugin()` marks the build as tried, hashes every
source and header in ops_cuda/ (plus the torch / CUDA / Python versions), and looks for
`<cache>/comodgan_ops_<hash>/`. If absent, it compiles with torch.utils.cpp_extension + ninja into a temporary
folder beside it and renames that into place atomically, so concurrent or interrupted builds never leave a
half-written cache entry. Any failure gives exactly one warning saying why and how to clear the cache; the ops
then use their pure-PyTorch reference. `COMODGAN_OPS_REF=1` forces the reference everywhere;
`COMODGAN_OPS_CACHE` overrides the cache folder (default ~/.cache/comodgan-pytorch/ops). SOURCE_DIR names the
sources' folder.
"""

import contextlib
import glob
import hashlib
import importlib.machinery
import importlib.util
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import warnings

import torch

FORCE_REF_ENV = "COMODGAN_OPS_REF"
CACHE_ENV = "COMODGAN_OPS_CACHE"
# Where the CUDA sources live: ops_cuda/ at the repository root, beside this package, because the layout keeps the
# kernels apart from their Python faces (torch_utils/ops/). This constant is the one place that knows it: the
# build, its error messages and the tests all read SOURCE_DIR.
SOURCE_DIR = str(pathlib.Path(__file__).resolve().parents[1] / "ops_cuda")
SOURCE_EXTS = (".cu", ".cpp")
HEADER_EXTS = (".h", ".cuh")
# torch.utils.cpp_extension adds -std=c++20 (what torch's headers want) to both compilers itself.
CXX_FLAGS = ["-O3"]
NVCC_FLAGS = ["-O3", "--use_fast_math"]


class _LoaderState:
    """Whether a build was tried and what it gave; one per process."""

    def __init__(self):
        self.tried = False
        self.plugin = None
        self.error = None


_STATE = _LoaderState()


def force_ref():
    """True when the environment asks for the reference ops everywhere."""
    return os.environ.get(FORCE_REF_ENV, "").strip() not in ("", "0")


def use_cuda(x):
    """Whether an op called with impl='cuda' on tensor `x` should try our kernels."""
    return x.device.type == "cuda" and not force_ref()


@contextlib.contextmanager
def device_stream(device):
    """Device guard for `device` and the handle (int) of its current CUDA stream, on which our kernels launch.

    The binding takes the stream from here because it cannot include torch's CUDA headers (see ops_cuda/).
    """
    with torch.cuda.device(device):
        yield torch.cuda.current_stream(device).cuda_stream


def cache_root():
    """Folder holding one sub-folder per built source hash."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "comodgan-pytorch", "ops")
    return root


def source_files():
    """(sources, headers) of the extension, sorted so the hash does not depend on directory order."""
    files = sorted(glob.glob(os.path.join(SOURCE_DIR, "*")))
    sources = [f for f in files if f.endswith(SOURCE_EXTS)]
    headers = [f for f in files if f.endswith(HEADER_EXTS)]
    return sources, headers


def source_hash(sources, headers):
    """Hash of every source and header plus everything else that changes the binary."""
    h = hashlib.sha256()
    for path in sources + headers:
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as fh:
            h.update(fh.read())
    meta = [torch.__version__, str(torch.version.cuda), platform.python_version(), sys.platform]
    h.update(repr((meta, CXX_FLAGS, NVCC_FLAGS)).encode())
    return h.hexdigest()[:16]


def _find_module_file(folder, name):
    matches = [p for p in glob.glob(os.path.join(folder, name + "*")) if p.endswith((".so", ".pyd"))]
    return matches[0] if matches else None


def _import_from(path, name):
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _build():
    """Return the loaded extension module, compiling it first if the cache has no entry for this source hash."""
    from torch.utils import cpp_extension

    sources, headers = source_files()
    if not sources:
        raise RuntimeError(f"no CUDA sources found in {SOURCE_DIR}")
    digest = source_hash(sources, headers)
    name = f"comodgan_ops_{digest}"
    root = cache_root()
    final = os.path.join(root, name)
    built = _find_module_file(final, name)
    if built is not None:
        return _import_from(built, name)

    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=root)
    try:
        # Compile copies, so the binary matches the hashed bytes even if ops_cuda/ changes mid-build.
        copied = []
        for path in sources + headers:
            dst = os.path.join(tmp, os.path.basename(path))
            shutil.copyfile(path, dst)
            if path in sources:
                copied.append(dst)
        module = cpp_extension.load(
            name=name, sources=copied, build_directory=tmp, extra_cflags=CXX_FLAGS,
            extra_cuda_cflags=NVCC_FLAGS, verbose=False,
        )
        if os.path.isdir(final) and _find_module_file(final, name) is None:
            shutil.rmtree(final, ignore_errors=True)  # a broken entry (e.g. emptied by hand) would block the rename
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished first: keep its entry, ours is dropped below.
            pass
        return module
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def get_plugin():
    """The compiled extension, or None (after one warning) when it cannot be built or loaded."""
    state = _STATE
    if state.tried:
        return state.plugin
    state.tried = True  # before compiling: a failing build is attempted once per process, not once per call
    try:
        state.plugin = _build()
    except Exception as err:  # noqa: BLE001 -- any build/load failure means: use the reference ops
        state.error = err
        warnings.warn(
            f"comodgan custom ops: could not build or load the CUDA kernels in {SOURCE_DIR} "
            f"({type(err).__name__}: {err}). Falling back to the slower pure-PyTorch reference ops. "
            f"If this follows an interrupted or stale build, delete the cache folder {cache_root()} and retry; "
            f"set {FORCE_REF_ENV}=1 to silence this by always using the reference.",
            RuntimeWarning,
            stacklevel=3,
        )
    return state.plugin
