"""glibc malloc settings that keep large CPU tensors on the heap instead of fresh mmap pages.

PyTorch's CPU allocator is plain malloc. glibc serves every request above its mmap threshold (at most 32 MB)
with a fresh mmap and unmaps it on free, so each large activation (a 64-channel 512x512 float map is 67 MB)
is page-faulted in again on every forward: measured on 2 cores, that was 40 % of a CoModGAN-512 forward
(1.78 s -> 1.07 s per image without it). `keep_large_allocations()` turns mmap off for malloc (requests are
served from the heap, which glibc never shrinks below the trim threshold set here), so freed activation
memory is reused by the next layer. The cost: memory freed by the process stays mapped to it. Only on Linux
with glibc. `COMODGAN_MALLOC_DEFAULT=1` leaves malloc as it is; it is read on every call, so setting it later
puts glibc's default settings back at the next call.
"""

import contextlib
import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of free heap instead of returning it to the kernel
OPT_OUT_ENV = "COMODGAN_MALLOC_DEFAULT"
# No mmap at all: thread arenas cannot then grow past 64 MB, and glibc retries in the main (brk) arena.
_TUNED = ((_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_MMAP_MAX, 0))
_GLIBC_DEFAULTS = ((_M_TRIM_THRESHOLD, 128 * 1024), (_M_MMAP_MAX, 65536))  # malloc.c DEFAULT_TRIM_THRESHOLD, _MMAP_MAX


class _State:
    """What this module last asked of malloc (None: nothing yet), so each call does work only when that changes."""

    settings = None
    in_effect = False


def keep_large_allocations():
    """Keep large allocations on the heap unless COMODGAN_MALLOC_DEFAULT=1 (read on every call: an opt-out set
    later restores glibc's defaults). Returns True if the heap settings are in effect (False: opted out, not
    Linux, or a libc without mallopt)."""
    opted_out = os.environ.get(OPT_OUT_ENV) == "1"
    wanted = _GLIBC_DEFAULTS if opted_out else _TUNED
    if _State.settings is wanted or (opted_out and _State.settings is None):  # nothing to change
        return _State.in_effect
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = all([bool(mallopt(param, value)) for param, value in wanted])
    _State.settings, _State.in_effect = wanted, ok and not opted_out
    return _State.in_effect


def _mallopt():
    """glibc's mallopt(param, value), or None where there is none (not Linux; musl or another libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


@contextlib.contextmanager
def outside_heap():
    """While the heap settings are in effect, let large requests made inside the block take their own mmap
    (glibc's default), then keep them off the mmap again. For long-lived tensors (the fast path's prepared
    weights) created between short-lived activations: on the heap they would pin it in pieces and make it grow
    (seen: G-512 with 3 forwards peaked at 1.61 GB resident, 1.44-1.49 GB with this)."""
    mallopt = _mallopt() if _State.in_effect else None
    if mallopt is None:
        yield
        return
    mallopt(_M_MMAP_MAX, dict(_GLIBC_DEFAULTS)[_M_MMAP_MAX])
    try:
        yield
    finally:
        mallopt(_M_MMAP_MAX, dict(_TUNED)[_M_MMAP_MAX])
