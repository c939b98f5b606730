"""Training infrastructure shared by tasks: config validation, EMA, metric sinks, plots."""

from ._config import ConfigError, accepted_arguments, check_arguments, load_yaml
from ._ema import EMA
from ._plots import learning_curves, parity_plot

__all__ = ["ConfigError", "accepted_arguments", "check_arguments", "load_yaml", "EMA", "learning_curves",
           "parity_plot"]
