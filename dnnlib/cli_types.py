"""click parameter types the command lines share (this module needs click; the rest of dnnlib needs nothing)."""

import math

import click


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf: they pass FloatRange's bounds checks ('nan' compares false
    with every bound), then reach the networks as a black fill (--trunc nan) or a non-finite loss at step 0."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number
