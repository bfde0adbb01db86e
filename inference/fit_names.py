"""The fit strategies' names, the one list that generate.py, the Python API and the web app offer, and the CLI's
options for them (inference.fitting runs the strategies).

Kept free of torch and numpy so that `generate.py --help` stays instant."""

import click

FIT_STRATEGIES = ("resize", "crop", "face")
FIT_CHOICES = ("auto",) + FIT_STRATEGIES  # auto: resize for a square image at the model's resolution, else crop
DEFAULT_FIT = "auto"  # what generate.py, the Python API and the web app use when not told
FIT_FALLBACKS = ("none", "crop", "resize")  # what `face` may fall back to when it cannot frame one face


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
