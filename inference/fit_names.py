"""The fit strategies' names, the one list that generate.py, the Python API and the web app offer (inference.fitting
runs the strategies; cli_options.py builds the command lines' options from these names).

Kept free of torch and numpy so that `generate.py --help` stays instant."""

FIT_STRATEGIES = ("resize", "crop", "face")
FIT_CHOICES = ("auto",) + FIT_STRATEGIES  # auto: resize for a square image at the model's resolution, else crop
DEFAULT_FIT = "auto"  # what generate.py, the Python API and the web app use when not told
FIT_FALLBACKS = ("none", "crop", "resize")  # what `face` may fall back to when it cannot frame one face
