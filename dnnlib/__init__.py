"""Small dependency-free helpers shared by every package: attribute dicts and user-facing errors."""

from dnnlib.util import EasyDict, UserError

__all__ = ["EasyDict", "UserError"]
