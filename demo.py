"""The main job on an embedded default; grows into the full train → generate → evaluate demo."""

import torch

from torch_utils.misc import resolve_device


def main():
    device = resolve_device("auto")
    print(f"torch {torch.__version__} on {device}: the end-to-end demo lands with the generate/demo issue.")


if __name__ == "__main__":
    main()
