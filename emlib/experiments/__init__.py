"""Experiments: the one runner and its results tables, the remedy grid, and what the chapters call.

* :mod:`emlib.experiments.grid` -- train and test runs into run folders; every results table.
* :mod:`emlib.experiments.remedies` -- the remedies of "beyond the paper" as grid runs, and their table.
* :mod:`emlib.experiments.chapters` -- chapter settings and helpers the notebooks call.
* :mod:`emlib.experiments.views` -- what a backbone sees: inputs, backbones side by side (a missing one
  left out with a note), token pictures.
"""
