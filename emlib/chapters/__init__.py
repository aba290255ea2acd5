"""What the notebooks call: a chapter's settings and runs, what a backbone sees, the page's facts, Colab.

* :mod:`emlib.chapters.settings` -- a chapter's parameters resolved against its profile, its data, its runs
  (grid runs, :mod:`emlib.grid`) and the latent diagnostics of chapter 6.
* :mod:`emlib.chapters.runs` -- the runs the chapters train, as one list (a sharded build, the book's cost).
* :mod:`emlib.chapters.published` -- results made elsewhere (``--results``): the latent table read from
  them, and the page's note on where its numbers come from.
* :mod:`emlib.chapters.backbones` -- what a backbone sees: inputs, backbones side by side (a missing one
  left out with a note), token pictures.
* :mod:`emlib.chapters.pages` -- the numbers a chapter's prose quotes, glued from the configuration.
* :mod:`emlib.chapters.prose` -- the sentences that depend on the profile or the run (head, feature cache,
  predictions, FD interval), composed from the config or the results.
* :mod:`emlib.chapters.colab` -- what a chapter's first cell calls on Colab.
"""
