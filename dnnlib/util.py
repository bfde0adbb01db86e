"""Plain-Python utilities with no torch dependency: EasyDict, the UserError that CLIs print without a traceback,
and the permissions a new file should get."""

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


def default_file_mode(directory=False):
    """The mode open() would give a new file (or mkdir a folder) under the current umask. tempfile.mkstemp and
    mkdtemp create owner-only entries; files written through them and renamed into place get this mode."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask
