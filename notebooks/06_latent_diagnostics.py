# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Latent diagnostics: why paired training fails
#
# The paper explains the collapse of paired training by looking at the backbone's **image
# embeddings**, one vector per slice {cite:p}`fusterbarcelo2026foundational`. Its Fig. 1 shows three
# things for DINOv2-L/14: a PCA of the embeddings separates Lucchi++ from VNC; the Fréchet distance
# between the two datasets is {glue:text}`paper_fd_frozen` with the frozen backbone and
# {glue:text}`paper_fd_lora` with the LoRA adapter; and a logistic-regression probe tells the datasets
# apart with accuracy {glue:text}`paper_probe_accuracy` and AUROC {glue:text}`paper_probe_auroc`.
# This chapter computes the same three diagnostics for the frozen backbone and for the adapter of the
# paired LoRA run of chapter 5, adds uncertainty (a resampling interval, cross-validation, a
# permutation control), and is honest about how few VNC slices there are.
#
# This page was built with the {glue:text}`profile` profile: {glue:text}`backbone` with
# {glue:text}`weights`, {glue:text}`embedding_slices` slices per dataset embedded at a long side of
# {glue:text}`embedding_long_edge` pixels. With random weights (the `smoke` profile) the numbers show
# that the diagnostics run, not what DINOv2 sees.

# %% tags=["parameters"]
profile = "smoke"               # smoke (CPU, random weights), quick (pretrained, Colab GPU) or paper
backbone: str | None = None     # None: the profile's backbone
data_dir: str | None = None     # None: $EMLIB_DATA if set, else download into the user cache
weights_dir: str | None = None  # None: $EMLIB_WEIGHTS if set, else the timm / open_clip hubs
device = "auto"                 # "auto": the GPU when there is one, else the CPU
seed: int | None = None         # None: the profile's seeds; an integer: only that seed
out_dir = "runs"

# %% [markdown]
# The cell above holds the chapter's parameters (papermill replaces them when the book is built).

# %%
import numpy as np
import pandas as pd

from emlib import (PAPER_CLAIMS, bootstrap_frechet, chapter_command, chapter_configs, chapter_settings,
                   dataset_embeddings, dataset_tokens, ensure_data, frechet_distance, grid_dir, latent_diagnostics,
                   linear_probe, load_backbone_for_latents, pca_embed, plot_grouped_bars, plot_pca_side_by_side,
                   protocol_probe, run_folder, token_separability_table, transfer_auroc)
from emlib import fd_interval_sentence, glue_facts, page_facts, show_table

settings = chapter_settings(profile, backbone=backbone, data_dir=data_dir, weights_dir=weights_dir,
                            device=device, seed=seed, out_dir=out_dir)
paths = ensure_data(settings)
paper = {c.claim_id: c.paper_value for c in PAPER_CLAIMS}  # the paper's numbers, from emlib.paper
facts = glue_facts(page_facts(settings),  # the numbers the text quotes: the profile's and the paper's
                   paper_fd_frozen=paper["fd_frozen"], paper_fd_lora=paper["fd_lora"],
                   paper_probe_accuracy=paper["probe_accuracy"], paper_probe_auroc=paper["probe_auroc"])
settings

# %% [markdown]
# ## One embedding per slice
#
# As the authors do, each slice is resized so that its long side is `long_edge` pixels (1022 in the
# paper), passed through the backbone, and its patch tokens are averaged into one vector of
# `embed_dim` numbers. We embed the Lucchi++ test split and VNC stack 1 (its 20 labelled slices)
# twice: with the frozen backbone, and with the LoRA adapter of the paired LoRA run (trained now if no
# earlier chapter did). Embeddings are cached in the grid folder.
#
# `latent_diagnostics` does all of this in one call. It returns the embeddings (`sets`, one
# `EmbeddingSet` per backbone) and `report`, the table of every diagnostic of this chapter with one
# row per embedding set (`latent_report`, {glue:text}`n_boot` resampling replicates for the
# interval). The sections below take that table apart, and recompute a step with the same library
# functions where seeing it helps.

# %%
n_boot = glue_facts(n_boot=200)["n_boot"]
report, sets = latent_diagnostics(settings, n_boot=n_boot)
print("the same run from a shell:", chapter_command(settings, regimes=("lora",), train_sets=("paired",)))
show_table(report, ["adapter", "n_a", "n_b", "embed_dim", "slices"], caption="What was embedded, per backbone",
           weights_label=settings.weights_label)

# %% [markdown]
# ## PCA: do the datasets separate?
#
# PCA finds the directions in which the embeddings vary most. Fitted on both datasets together, the
# first two components give a map of the embedding space; if the datasets form two clouds there, the
# largest variation in the backbone's view of these slices is *which dataset* they come from.

# %%
panels = {}
for key, s in sets.items():
    x, labels, hover = s.stacked()
    coords, evr = pca_embed(x, n_components=2, seed=settings.seed)
    panels[key] = {"coords": coords, "labels": labels, "explained_variance": evr, "hover_text": hover}
plot_pca_side_by_side(panels["frozen"], panels["lora"], subplot_titles=("frozen backbone", "paired LoRA adapter"),
                      title=f"PCA of slice embeddings ({settings.backbone})", weights_label=settings.weights_label)

# %% [markdown]
# ## Fréchet distance, with a resampling interval
#
# The {term}`Fréchet distance` {cite:p}`dowson1982frechet`, best known from the FID score for generative
# models {cite:p}`heusel2017gans`, treats each dataset's embeddings as a Gaussian (mean $\mu$, covariance
# $\Sigma$) and measures how far apart the two Gaussians are:
#
# $$ \mathrm{FD} = \lVert \mu_a - \mu_b \rVert^2 + \operatorname{tr}\!\left(\Sigma_a + \Sigma_b
#    - 2 (\Sigma_a \Sigma_b)^{1/2}\right). $$
#
# The paper gives one number per model. `bootstrap_frechet`, which `latent_report` calls, adds an
# interval that shows how much the number would move with other slices of the same size; the
# `fd_interval` column names its method. On this page: {glue:text}`fd_interval_method`

# %%
glue_facts(fd_interval_method=fd_interval_sentence(report, n_boot=n_boot))  # from the report's fd_interval column
show_table(report, ["adapter", "fd", "fd_low", "fd_high", "fd_interval"], decimals=2,
           caption="Fréchet distance between Lucchi++ and VNC embeddings, with its interval",
           weights_label=settings.weights_label)

# %% [markdown]
# ## Rank deficiency: few slices in many dimensions
#
# A covariance estimated from $n$ vectors has rank at most $n - 1$. In the paper, VNC stack 1 gives
# 20 slices in the 1024-dimensional space of DINOv2-L/14, so the VNC covariance has rank at most 19:
# it is singular, and the trace term of the FD is computed from a matrix that is zero in more than
# 1000 directions. The FD is still a number, but it depends strongly on how many slices there are,
# and it cannot be compared across backbones with different `embed_dim`. This page embeds
# {glue:text}`embedding_slices` slices per dataset in the {glue:text}`embed_dim`-dimensional space of
# {glue:text}`backbone`; the table shows the ranks here:

# %%
lucchi, vnc = sets["frozen"].embeddings["lucchi_pp"], sets["frozen"].embeddings["vnc"]
show_table(pd.DataFrame({"slices": [len(lucchi), len(vnc)], "embed_dim": [lucchi.shape[1]] * 2,
                         "covariance rank": [np.linalg.matrix_rank(np.cov(lucchi.T)), np.linalg.matrix_rank(np.cov(vnc.T))]},
                        index=["Lucchi++", "VNC"]), index=True, caption="Frozen embeddings: size and covariance rank",
           weights_label=settings.weights_label)

# %% [markdown]
# One check of how much the FD relies on the missing directions: compute it after projecting both sets
# on their first $k$ principal components, with $k$ below the number of slices. If the frozen/LoRA
# ordering is the same at every $k$, it does not hinge on the singular part.

# %%
ks = [k for k in (2, 4, 8, 16) if k < min(len(lucchi), len(vnc))]
show_table(pd.DataFrame({key: {f"PCA {k}": frechet_distance(s.embeddings["lucchi_pp"], s.embeddings["vnc"],
                                                            n_components=k, seed=settings.seed) for k in ks}
                         for key, s in sets.items()}), index=True, decimals=2,
           caption="FD after projecting on the first k principal components", weights_label=settings.weights_label)

# %% [markdown]
# ## A linear probe: can a straight line tell the datasets apart?
#
# A {term}`linear probe` {cite:p}`alain2016probes`, here a logistic regression on the embeddings (after
# PCA to at most 64 components), predicts the dataset of each slice. The authors fit PCA on all
# embeddings and score one stratified 80/20 split (`protocol_probe`); with 20 VNC slices that test part
# holds 4 VNC slices, so for VNC the paper's accuracy of {glue:text}`paper_probe_accuracy` rests on
# four answers (the `test slices` column below counts this page's). `linear_probe` adds
# {glue:text}`folds`-fold cross-validation (PCA fitted inside each fold) and a permutation control:
# the same probe on shuffled labels, which should land near chance (0.5). The report holds both
# (`protocol_*` and `probe_*` columns); the cell below calls the two functions on the embeddings
# to show what each one gives.

# %%
folds, permutations = glue_facts(folds=min(5, len(vnc)), permutations=5).values()
probe = {}
for key, s in sets.items():
    x, labels, _ = s.stacked()
    cv = linear_probe(x, labels, n_splits=folds, n_permutations=permutations, seed=settings.seed)
    split = protocol_probe(x, labels, seed=settings.seed)
    probe[key] = {"80/20 accuracy": split["accuracy"], "80/20 AUROC": split["auroc"], "test slices": split["n_test"],
                  "CV accuracy": cv["accuracy"], "CV AUROC": cv["auroc"], "permuted AUROC": cv["permuted_auroc"],
                  "permutation p": cv["permutation_pvalue"]}
show_table(pd.DataFrame(probe).T, index=True, caption="Probe: which dataset does a slice come from?",
           formats={"test slices": "{:.0f}"}, weights_label=settings.weights_label)

# %% [markdown]
# A probe at 1.0 with the permuted control near 0.5 means the datasets are linearly separable in the
# embedding space. (With $k$ permutations the smallest possible p-value is $1/(k + 1)$; here
# $k$ = {glue:text}`permutations`, and more permutations give a finer one.) Separability needs no pretraining: the two datasets differ in grey values and texture
# (chapter 1), and even a random-weight network can pass such differences on, as the smoke profile's
# table may show. A perfect probe is therefore weak evidence on its own; read it together with the FD,
# the PCA picture and the segmentation results of chapter 5.
#
# ## On the authors' image sets
#
# The paper's Fig. 1 numbers come from other slices than the ones above. The authors' feature
# config (`configs/cluster/EM/paired_feat_analysis_cluster.yaml` in
# `uhlmanngroup/MicroscopyFoundationHub`) embeds their composed test folder, `DINO-POC/test/images`:
# the Lucchi++ test slices and the 3 VNC slices their split script
# (`scripts/data/compose_em_datasets.py`) leaves for testing; `scripts/run_domain_analysis.py`
# computes the FD and the 80/20 probe from those embeddings, the frozen ones and those of a paired
# LoRA checkpoint. `latent_diagnostics(settings, image_set="authors")` does the same with this
# page's backbone. With their three VNC slices the VNC covariance has rank at most 2, no resampling interval
# can be drawn (a half would hold one slice), and the 80/20 split tests the probe on the number of
# VNC slices in the `VNC in the 80/20 test` column. (The authors' extractor also pads the Lucchi++
# slices that share a batch with the VNC ones with zeros, and the padding enters their mean; that
# step is not repeated here.)

# %%
authors, _ = latent_diagnostics(settings, n_boot=n_boot, image_set="authors")
show_table(authors.rename(columns={"protocol_test_b": "VNC in the 80/20 test"}),
           ["adapter", "n_a", "n_b", "fd", "fd_interval", "protocol_accuracy", "protocol_auroc", "VNC in the 80/20 test"],
           decimals=2, caption="The authors' image sets: Lucchi++ test against the 3 VNC test slices",
           weights_label=settings.weights_label)

# %% [markdown]
# ## Beside the paper
#
# `report`, the table `latent_diagnostics` returned, holds all of the above in one row per embedding
# set (it is also written to the grid folder, `latents/domain_report.csv`; chapter 7 puts these rows
# beside the segmentation claims). Next to the paper's Fig. 1 numbers, read from `emlib.PAPER_CLAIMS`:

# %%
frozen, lora = report.iloc[0], report.iloc[1]
side = pd.DataFrame({
    "paper (DINOv2-L/14, Fig. 1)": [paper[k] for k in ("fd_frozen", "fd_lora", "probe_accuracy", "probe_auroc")],
    "this book": [f"{frozen.fd:.2f} [{frozen.fd_low:.2f}, {frozen.fd_high:.2f}]",
                  f"{lora.fd:.2f} [{lora.fd_low:.2f}, {lora.fd_high:.2f}]",
                  f"{frozen.protocol_accuracy:.3f}", f"{frozen.protocol_auroc:.3f}"],
    "this book, authors' image sets": [f"{authors.fd.iloc[0]:.2f}", f"{authors.fd.iloc[1]:.2f}",
                                       f"{authors.protocol_accuracy.iloc[0]:.3f}", f"{authors.protocol_auroc.iloc[0]:.3f}"]},
    index=["FD frozen", "FD LoRA", "probe accuracy (80/20, frozen)", "probe AUROC (80/20, frozen)"])
show_table(side, index=True, formats={"paper (DINOv2-L/14, Fig. 1)": "{:.2f}"},
           caption=f"Fig. 1 numbers: the paper's and this book's ({settings.backbone})",
           weights_label=settings.weights_label)

# %% [markdown]
# The caption gives one probe result; the book's row uses the frozen embeddings (the LoRA probe is in
# the probe table above). The last column is on the slices the paper's numbers were computed on; the
# middle one on more VNC slices, with an interval. The book's values come from this page's profile (its backbone, its weights,
# its number of slices);
# only a pretrained DINOv2-L/14 on all slices at `long_edge=1022` (the `paper` profile) is comparable
# with the paper's column. Chapter 7 collects these rows with the segmentation claims in one table.
#
# ## Patch level: what the head can use
#
# The slice embeddings above are averages; the segmentation head never sees them. It reads the
# **patch tokens**, one per 14 × 14 patch, and must tell mitochondria from the rest. Chapter 2 showed
# these tokens as the classic DINO picture (their first three principal components as RGB). Here we
# ask the head's question directly: label each token of a few test slices per dataset as foreground
# when at least half of its patch is mitochondria (`downsample_mask_to_grid`), and fit a linear
# probe that separates foreground from background tokens (`token_separability`, a cross-validated
# AUROC, plus the Fisher ratio along the difference of the class means). A second
# probe is fitted on the *other* dataset's tokens and scored on this one (`transfer_auroc`): if the
# within-dataset AUROC is high but the transferred one is low, the foreground direction differs
# between Lucchi++ and VNC, and one shared linear read-out cannot serve both.
#
# Slices are resized to a long side of at least 224 pixels here: at smaller sizes a patch covers so
# much of the slice that almost no token is mostly mitochondria.

# %%
token_slices, token_long_edge = settings.token_slices, max(settings.profile.embedding_long_edge or 1022, 224)
lora_run = run_folder(chapter_configs(settings, regimes=("lora",), train_sets=("paired",))[0], grid_dir(settings),
                      root=settings.data_dir)  # the paired LoRA run latent_diagnostics embedded with
backbones = {key: load_backbone_for_latents(settings.backbone, pretrained=settings.pretrained, adapter_run=run,
                                            pos_interpolation=settings.profile.base.pos_interpolation)[0]
             for key, run in (("frozen", None), ("LoRA", lora_run))}
tokens = token_separability_table(backbones, root=settings.data_dir, slices=token_slices, long_edge=token_long_edge,
                                  device=settings.device, seed=settings.seed, run_dir=grid_dir(settings) / "latents")
show_table(tokens, ["adapter", "dataset", "n_fg", "fg_fraction", "auroc", "auroc_std", "transfer_auroc"],
           caption="Foreground vs background patch tokens, per dataset")

# %%
bars = tokens.melt(id_vars=["adapter", "dataset"], value_vars=["auroc", "transfer_auroc"], var_name="probe",
                   value_name="AUROC").replace({"probe": {"auroc": "fitted on this dataset (CV)",
                                                          "transfer_auroc": "fitted on the other dataset"}})
plot_grouped_bars(bars, x="dataset", y="AUROC", color="probe", facet="adapter", y_range=(0, 1),
                  title=f"Foreground vs background patch-token probe ({settings.backbone})",
                  weights_label=settings.weights_label)

# %% [markdown]
# Read the table per row: `fg_fraction` is the share of foreground tokens (a few percent, so an AUROC
# is more informative than an accuracy, which would be high for a probe that always says
# background), and `n_fg` counts them; with a few dozen foreground tokens the AUROC moves by about
# `auroc_std` between folds. A within-dataset AUROC well above 0.5 means the tokens carry the
# mitochondria signal a light head can use. A transferred AUROC clearly below it means that signal
# sits in different directions for the two datasets, which is what paired training asks one head
# to reconcile; comparing the frozen and LoRA rows shows whether the adapter brought the directions
# together. On the smoke profile the weights are random and the adapter trains for seconds, so it
# barely moves the tokens (the frozen and LoRA rows may coincide): the numbers show only that the
# diagnostic runs.
#
# ## Summary
#
# - Image embeddings (mean patch token per slice) of Lucchi++ and VNC, frozen and with the paired
#   LoRA adapter, cached in the grid folder.
# - PCA, Fréchet distance with a half-sample subsampling interval, and a linear probe with cross-validation and a
#   permutation control, beside the authors' single 80/20 split.
# - With fewer slices than dimensions (the paper's 20 VNC slices in 1024 dimensions; here
#   {glue:text}`embedding_slices` in {glue:text}`embed_dim`) the covariance is rank-deficient: FD
#   values are sample-size dependent and best read as a comparison (frozen vs LoRA) on the same slices.
# - The paper's numbers were computed on the authors' composed test folder, with 3 VNC slices:
#   `image_set="authors"` repeats that; there the FD has no interval and the 80/20 probe is
#   tested on one or two VNC slices.
# - At the patch level, a linear probe on the tokens of each dataset measures how well foreground
#   and background separate (what the head can use); the same probe moved to the other dataset
#   shows whether one read-out can serve both.
#
# ## Exercises
#
# :::{exercise} VNC stack 2
# :label: ex-latents-stack2
#
# The paper's Fig. 4 uses VNC stack 2 (the 20 unlabelled slices) instead of stack 1. Recompute the
# frozen embeddings with `vnc_split="unlabelled"` and the FD. Does it change much?
# :::
#
# :::{solution} ex-latents-stack2
# :class: dropdown
#
# ```python
# net, adapter = load_backbone_for_latents(settings.backbone, pretrained=settings.pretrained)
# s2 = dataset_embeddings(net, adapter=adapter, root=settings.data_dir, vnc_split="unlabelled",
#                         slices=settings.profile.embedding_slices, long_edge=settings.profile.embedding_long_edge,
#                         cache_dir=grid_dir(settings) / "embeddings", progress=False)
# bootstrap_frechet(s2.embeddings["lucchi_pp"], s2.embeddings["vnc"], allow_singular=True)
# ```
#
# Stack 2 comes from the same dataset and microscope, so it should sit close to stack 1 in the
# embedding space; differences in the FD of the size of the interval are noise.
# :::
#
# :::{exercise} Fréchet distance and sample size
# :label: ex-latents-nslices
#
# How does the FD depend on the number of slices? Subsample Lucchi++ to 20 slices (like VNC) several
# times and recompute it.
# :::
#
# :::{solution} ex-latents-nslices
# :class: dropdown
#
# ```python
# rng = np.random.default_rng(0)
# a, b = sets["frozen"].embeddings["lucchi_pp"], sets["frozen"].embeddings["vnc"]
# n = min(len(a), len(b))
# [frechet_distance(a[rng.choice(len(a), n, replace=False)], b, allow_singular=True) for _ in range(5)]
# ```
#
# With fewer samples both covariances lose rank and the mean and trace estimates get noisier; the
# spread of these values next to the full-set FD shows how much of the number is sampling.
# :::
#
# :::{exercise} One probe for both datasets
# :label: ex-latents-joint-probe
#
# Paired training fits one head on both datasets. Fit one foreground probe on the frozen tokens of
# Lucchi++ and VNC together (`dataset_tokens`, `transfer_auroc`) and score it on each dataset. How
# does it compare with the per-dataset probes in the table?
# :::
#
# :::{solution} ex-latents-joint-probe
# :class: dropdown
#
# ```python
# kw = dict(root=settings.data_dir, slices=token_slices, long_edge=token_long_edge, device=settings.device)
# xa, ya, _ = dataset_tokens(backbones["frozen"], "lucchi_pp", "test", **kw)
# xb, yb, _ = dataset_tokens(backbones["frozen"], "vnc", "all", **kw)
# ha, hb = len(xa) // 2, len(xb) // 2  # tokens come slice by slice: fit on the first half of the slices
# x, y = np.concatenate([xa[:ha], xb[:hb]]), np.concatenate([ya[:ha], yb[:hb]])
# {"Lucchi++": transfer_auroc(x, y, xa[ha:], ya[ha:]), "VNC": transfer_auroc(x, y, xb[hb:], yb[hb:])}
# ```
#
# The joint probe is scored on slices it was not fitted on (scoring it on its own tokens would be
# near 1 with this many dimensions, and mean nothing). If it falls clearly below the within-dataset
# AUROCs, one linear read-out cannot fit both datasets' foreground directions at once; a small drop
# means a shared head is possible in principle and the collapse has other causes. With half the
# slices to fit on, expect it to lose a little anyway.
# :::
