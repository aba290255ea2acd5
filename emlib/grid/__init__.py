"""The grid: the one runner and its results tables, launchers beyond one process, the remedy grid.

* :mod:`emlib.grid.runner` -- train and test runs into run folders; every results table.
* :mod:`emlib.grid.launch` -- a plan with its cost, the runs' status, submitit launchers.
* :mod:`emlib.grid.remedies` -- the remedies of "beyond the paper" as grid runs, and their table.

What the chapters call is one floor up, in :mod:`emlib.chapters`.
"""
