"""The Generator's inference implementations, named once for every tool that runs it (cli_options.py builds the
command lines' --impl option from these names).

Kept free of torch so that `generate.py --help` stays instant (generate.py imports torch lazily)."""

IMPLS = ("fast", "fast-bf16", "ref")
DEFAULT_IMPL = "fast"
IMPL_HELP = ("Generator implementation: fast (the CPU inference path, float32), fast-bf16 (the same in bfloat16: "
             "about 3x faster on CPUs with AMX or AVX512-BF16, ~1e-2 from the reference) or ref (the reference "
             "layers).")
