"""Plotly figures for the book, drawn from arrays and tables only (never models).

Every ``plot_*`` function returns a :class:`plotly.graph_objects.Figure` and takes ``title`` and
``weights_label``. When the weights label says the backbone had **random weights** (smoke runs
without downloaded weights), the figure carries a red "random weights" badge, so it can never be
mistaken for a result of the pretrained model.

- :mod:`emlib.viz.common`: dataset and overlay colours, the book's figure layout (:func:`finish_figure`);
- :mod:`emlib.viz.embeddings`: PCA scatters of slice embeddings, patch-token PCA maps;
- :mod:`emlib.viz.slices`: slice overlays, the client-side slice browser, the patch grid,
  intensity histograms and the live ipywidgets slice viewer;
- :mod:`emlib.viz.tables`: the IoU matrix, diagnostics and remedy tables, the remedy scatter
  (latent distance against score), grouped bars, the paper's Fig. 1 numbers;
- :mod:`emlib.viz.display`: the book's table style (:func:`show_table`), for display only.
"""

from __future__ import annotations

from emlib.viz.common import DATASET_COLORS, OVERLAY_COLORS, figure_badges, finish_figure, format_title
from emlib.viz.display import BookTable, show_table
from emlib.viz.embeddings import plot_embedding_pca, plot_patch_pca, plot_pca_side_by_side
from emlib.viz.slices import (
    plot_intensity_histograms,
    plot_patch_grid,
    plot_slice_browser,
    plot_slice_overlay,
    slice_viewer,
)
from emlib.viz.tables import (
    plot_diagnostics_table,
    plot_grouped_bars,
    plot_iou_matrix,
    plot_paper_numbers,
    plot_remedy_scatter,
    plot_remedy_table,
)

__all__ = [
    "DATASET_COLORS",
    "OVERLAY_COLORS",
    "format_title",
    "finish_figure",
    "figure_badges",
    "show_table",
    "BookTable",
    "plot_paper_numbers",
    "plot_embedding_pca",
    "plot_pca_side_by_side",
    "plot_patch_pca",
    "plot_iou_matrix",
    "plot_slice_overlay",
    "plot_slice_browser",
    "plot_patch_grid",
    "slice_viewer",
    "plot_intensity_histograms",
    "plot_diagnostics_table",
    "plot_remedy_table",
    "plot_remedy_scatter",
    "plot_grouped_bars",
]
