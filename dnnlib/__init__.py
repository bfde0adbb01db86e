"""Small helpers shared by every package: attribute dicts, user-facing errors, output paths, file modes (no
dependencies); cli_types has the click parameter types of the command lines."""

from dnnlib.util import EasyDict, UserError, check_output_path, default_file_mode

__all__ = ["EasyDict", "UserError", "check_output_path", "default_file_mode"]
