"""Plain-Python utilities with no torch dependency: EasyDict and the UserError that CLIs print without a traceback."""


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
