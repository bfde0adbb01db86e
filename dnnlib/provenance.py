"""Where a result came from: the hash of an input file and the version of this code (recorded in snapshots,
comparison results and exported models)."""

import hashlib
import os
import subprocess

# The checkout this package sits in (git describe runs there); outside a git work tree the version is 'unknown'.
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def file_sha256(path):
    """Hex SHA-256 of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def code_version():
    """`git describe --always --dirty` of this checkout, or 'unknown' outside a git work tree."""
    try:
        out = subprocess.run(["git", "-C", CODE_ROOT, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
