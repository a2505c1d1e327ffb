"""mergekit-evo: evolutionary model merging on top of mergekit, with cheap fitness estimators and plugins."""

__version__ = "0.1.0"
