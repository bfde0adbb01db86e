"""The Generator's inference implementations and the `--impl` option of the CLIs that run it.

Kept free of torch so that `generate.py --help` stays instant (generate.py imports torch lazily)."""

import click

IMPLS = ("fast", "fast-bf16", "ref")
IMPL_HELP = ("Generator implementation: fast (the CPU inference path, float32), fast-bf16 (the same in bfloat16: "
             "about 3x faster on CPUs with AMX or AVX512-BF16, ~1e-2 from the reference) or ref (the reference "
             "layers).")

impl_option = click.option("--impl", type=click.Choice(IMPLS), default="fast", show_default=True, help=IMPL_HELP)
