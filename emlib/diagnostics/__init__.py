"""Latent diagnostics: how far apart are two EM datasets in a backbone's feature space?

The paper explains the collapse of paired Lucchi++ + VNC training with three
analyses of image-level embeddings (one vector per slice, the mean of the patch
tokens; ``authors-protocol.md`` §6):

* a **PCA** of the pooled embeddings, coloured by dataset (:func:`pca_embed`);
* the **Fréchet distance** between the two sets, treated as Gaussians
  (:func:`frechet_distance`, :func:`bootstrap_frechet`); the paper reports
  79.32 (frozen DINOv2) and 45.02 (LoRA);
* a **linear probe** that predicts the dataset from the embedding
  (:func:`protocol_probe` is the authors' single 80/20 split,
  :func:`linear_probe` a leakage-free cross-validated version with a
  label-permutation control); the paper reports accuracy = AUROC = 1.0.

:func:`domain_report` runs all of them on a ``{dataset: embeddings}`` dict and
returns one tidy row. Patch-level helpers (:func:`patch_pca_rgb`,
:func:`token_separability`, :func:`downsample_mask_to_grid`) show what a
segmentation head can read from the tokens. Everything here works on plain
arrays; the embeddings and token maps come from
:func:`emlib.models.extract_embeddings` / :func:`emlib.models.extract_token_maps`.

Modules: :mod:`~emlib.diagnostics.frechet` (Fréchet distance),
:mod:`~emlib.diagnostics.probe` (linear probes), :mod:`~emlib.diagnostics.tokens`
(PCA views, patch tokens), :mod:`~emlib.diagnostics.report` (the one-row report).

Naming follows scikit-learn: ``*_distance`` is lower-is-closer; accuracy and
AUROC are scores (higher is better).
"""

from __future__ import annotations

from emlib.diagnostics.frechet import SUBSAMPLE_MIN_ROWS, bootstrap_frechet, frechet_distance, frechet_distance_from_stats
from emlib.diagnostics.probe import linear_probe, protocol_probe
from emlib.diagnostics.report import domain_report, write_report
from emlib.diagnostics.tokens import downsample_mask_to_grid, patch_pca_rgb, pca_embed, token_separability

__all__ = [
    "frechet_distance_from_stats",
    "frechet_distance",
    "bootstrap_frechet",
    "SUBSAMPLE_MIN_ROWS",
    "linear_probe",
    "protocol_probe",
    "pca_embed",
    "patch_pca_rgb",
    "token_separability",
    "downsample_mask_to_grid",
    "domain_report",
    "write_report",
]
