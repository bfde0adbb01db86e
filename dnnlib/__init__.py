"""Small dependency-free helpers shared by every package: attribute dicts, user-facing errors, file modes."""

from dnnlib.util import EasyDict, UserError, default_file_mode

__all__ = ["EasyDict", "UserError", "default_file_mode"]
