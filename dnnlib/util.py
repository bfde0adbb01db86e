"""Plain-Python utilities with no torch dependency: EasyDict, the UserError that CLIs print without a traceback,
the check that an output path can be written, and the permissions a new file should get."""

import os


class EasyDict(dict):
    """A dict whose keys are also attributes (`cfg.batch` == `cfg["batch"]`)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


class UserError(Exception):
    """Bad input from the user (a file, an option, a spec). CLIs print the message and exit non-zero,
    without a traceback; the message must name the file or option and the problem."""


def check_output_path(path, what, kind="folder"):
    """Raise UserError naming `what` (e.g. '--outdir') unless `path` can become an output folder (kind 'folder') or
    file ('file'): nothing of the other kind is already there and no file stands where a parent folder must go.
    Called before the work, so a long job does not fail at its first write."""
    full = os.path.abspath(os.fspath(path))
    if kind == "folder" and os.path.exists(full) and not os.path.isdir(full):
        raise UserError(f"{what} {path}: is a file, not a folder")
    if kind == "file" and os.path.isdir(full):
        raise UserError(f"{what} {path}: is a folder, not a file")
    parent = os.path.dirname(full)
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{what} {path}: {parent} is a file, so no folder can be made there")


def default_file_mode(directory=False):
    """The mode open() would give a new file (or mkdir a folder) under the current umask. tempfile.mkstemp and
    mkdtemp create owner-only entries; files written through them and renamed into place get this mode."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask
