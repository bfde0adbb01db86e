"""The click options that several command-line scripts share (--impl; --fit, --face-index, --fit-fallback), built
from the plain constants of inference.impls and inference.fit_names so that the library itself needs no click.

Kept free of torch and numpy so that `generate.py --help` stays instant."""

import click

from inference.fit_names import DEFAULT_FIT, FIT_CHOICES, FIT_FALLBACKS
from inference.impls import DEFAULT_IMPL, IMPL_HELP, IMPLS

impl_option = click.option("--impl", type=click.Choice(IMPLS), default=DEFAULT_IMPL, show_default=True,
                           help=IMPL_HELP)


def fit_options(fn):
    """generate.py's --fit, --face-index and --fit-fallback (keyword arguments fit, face_index, fit_fallback)."""
    fn = click.option("--fit-fallback", type=click.Choice(FIT_FALLBACKS), default="none", show_default=True,
                      help="With --fit face: the strategy to use instead of failing when no face, several faces "
                           "or a hole outside the face's frame is found.")(fn)
    fn = click.option("--face-index", type=click.IntRange(min=0), default=None,
                      help="With --fit face: which face to frame when several are found (counted left to right).")(fn)
    return click.option("--fit", type=click.Choice(FIT_CHOICES), default=DEFAULT_FIT, show_default=True,
                        help="How each image meets the model: resize (the whole image), crop (a window around the "
                             "holes at the photo's own resolution), face (the face framed as FFHQ frames its "
                             "faces); auto = resize for a square image at the model's resolution, else crop.")(fn)
