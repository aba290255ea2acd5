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
# # Beyond the paper: can paired training be repaired?
#
# The paper stops at a diagnosis: one model trained on Lucchi++ and VNC together does worse on each
# than a model trained on that dataset alone, for the frozen backbone and for LoRA
# {cite:p}`fusterbarcelo2026foundational`. Chapter 5 reproduced the collapse. This chapter tries the
# standard remedies of domain adaptation, one at a time, at three levels:
#
# | level | remedy | `RunConfig` option |
# |---|---|---|
# | input | per-dataset intensity standardisation | `input_alignment="standardise"` |
# | input | histogram matching VNC → Lucchi++ (and back) | `input_alignment="histmatch"` (`alignment_reference="vnc"`) |
# | input | CLAHE (needs scikit-image) | `input_alignment="clahe"` |
# | input | resampling to a common pixel size (5 nm) | `input_alignment="resample"` |
# | features | per-dataset feature standardisation (AdaBN-style statistics) | `feature_norm=True` |
# | features | per-dataset FiLM before the head | `film=True` |
# | features | CORAL loss between the datasets' features | `coral_weight=1.0` |
# | training | balanced sampling | `balance=True` |
# | training | one head per dataset on a shared backbone / LoRA adapter | `heads_per_domain=True` |
# | training | loss reweighting by foreground fraction | `fg_reweight=True` |
#
# Each remedy is a small function or module in `emlib.grid.remedies` and an option that `emlib.train.fit`
# and `emlib.evaluation.evaluate` honour, so each row of the table at the end is one ordinary training
# run. None of this is in the paper: it is this book's extension.
#
# This page was built with the {glue:text}`profile` profile: {glue:text}`weights`, each run trains for
# {glue:text}`training`. With random weights (the `smoke` profile) the remedy table only shows that
# every run goes through; its numbers say nothing about the remedies. The `quick` and `paper`
# profiles give the real answers.

# %% tags=["parameters"]
profile = "smoke"               # smoke (CPU, random weights), quick (pretrained, Colab GPU) or paper
backbone: str | None = None     # None: the profile's backbone
data_dir: str | None = None     # None: $EMLIB_DATA if set, else download into the user cache
weights_dir: str | None = None  # None: $EMLIB_WEIGHTS if set, else the timm / open_clip hubs
device = "auto"                 # "auto": the GPU when there is one, else the CPU
seed: int | None = None         # None: the profile's seeds; an integer: only that seed
out_dir = "runs"
regimes = ["frozen", "lora"]    # regimes of the remedy table; each remedy is one training run per regime

# %% [markdown]
# The cell above holds the chapter's parameters (papermill replaces them when the book is built).

# %%
import numpy as np
import pandas as pd

from emlib import (DOMAINS, alignment_summary, chapter_command, chapter_settings, ensure_data,
                   feature_remedy_effects, foreground_weights, grid_dir, input_remedy_effects, left_out_note,
                   limit_cpu_threads, load_volume, patch_features, plot_grouped_bars, plot_intensity_histograms,
                   plot_remedy_scatter, plot_remedy_table, plot_slice_browser, remedy_config, remedy_latents,
                   run_alignment_grid, training_foreground_fractions)
from emlib import glue_facts, page_facts, show_table

settings = chapter_settings(profile, backbone=backbone, data_dir=data_dir, weights_dir=weights_dir,
                            device=device, seed=seed, out_dir=out_dir)
paths = ensure_data(settings)
facts = glue_facts(page_facts(settings))  # the numbers the text quotes, from the profile
limit_cpu_threads(settings)  # the profile's threads on a CPU (smoke: 1; tiny runs fight over cores)
settings

# %% [markdown]
# ## Input level: make the pixels look alike
#
# Chapter 1 showed the covariate shift in the grey values: Lucchi++ (FIB-SEM) is soft and narrow, VNC
# (ssTEM) hard and wide. The input-level remedies change the pixels of every volume (training and
# test) before any model sees them. Their reference is the **Lucchi++ training set** (the slices the
# run trains on), unless `alignment_reference="vnc"` turns the direction around.
#
# - **Standardisation** shifts and scales each dataset's grey values so its mean and standard
#   deviation equal the reference's. Two numbers per dataset; the shape of the histogram stays.
# - **Histogram matching** maps each grey level through the two cumulative distributions (CDFs) so
#   the whole histogram follows the reference. On uint8 stacks this is a 256-entry lookup table
#   (`histogram_match`); the CDFs then agree up to the mass of a single grey level.
# - **CLAHE** (contrast-limited adaptive histogram equalisation {cite:p}`zuiderveld1994clahe,pizer1987adaptive`) equalises each
#   slice locally, in tiles, with a cap on the contrast gain. It needs no reference: both datasets are
#   pushed towards the same "flat" local histogram. It comes from scikit-image.
# - **Resampling** brings both datasets to one physical pixel size: VNC's 4.6 nm pixels become 5 nm
#   by resizing with the factor 4.6 / 5 = 0.92 (masks with nearest neighbour), so a 14-pixel patch
#   covers 70 nm in both.
#
# Statistics of each volume are its own (the test volume's too: this uses test *images*, never test
# labels). Here is what each remedy does to the VNC training slices, measured against Lucchi++
# (`input_remedy_effects` applies each one with `align_volume`, then compares the grey values):

# %%
n = settings.view_slices
lucchi = load_volume("lucchi_pp", "train", root=settings.data_dir, slices=n)
vnc = load_volume("vnc", "train", root=settings.data_dir, slices=n)
effects, aligned = input_remedy_effects(lucchi, vnc)  # clahe too when scikit-image is installed
show_table(effects, caption="VNC training slices after each input remedy, against the Lucchi++ reference")

# %% [markdown]
# The first row is the target; the others are VNC after each remedy. Standardisation matches mean and
# standard deviation but not the shape of the histogram; histogram matching matches both (its CDF
# distance is the smallest); resampling changes the shape of the slices, not their grey values; CLAHE
# (when scikit-image is installed) changes both datasets, so its distance to the *unchanged* Lucchi++
# says little. The histograms:

# %%
plot_intensity_histograms({"Lucchi++": lucchi.images, **aligned},
                          title="Grey values of the training slices: Lucchi++ and VNC after each input remedy")

# %% [markdown]
# And one VNC slice under each intensity remedy (the slider steps through the versions; resampling
# is left out since it changes the size):

# %%
versions = {k: v for k, v in aligned.items() if v.shape == vnc.images.shape}
plot_slice_browser(np.stack([v[0] for v in versions.values()]), np.stack([vnc.masks[0]] * len(versions)),
                   slice_labels=list(versions), title=f"VNC slice {vnc.slice_ids[0]} under each input remedy")

# %% [markdown]
# ## Feature level: align what the head sees
#
# Matching grey values does not make the images the same: texture, membrane sharpness and organism
# differ. The feature-level remedies act on the backbone's patch features, the input of the
# segmentation head.
#
# - **Per-dataset feature standardisation** (`DomainFeatureNorm`) keeps a running mean and
#   variance of every feature channel *per dataset* and standardises each item's features with the
#   statistics of its own dataset, as AdaBN does with batch-norm statistics {cite:p}`li2018adabn`. At test
#   time the test set's domain id picks the statistics (0 for Lucchi++, 1 for VNC); a dataset never
#   seen in training is standardised with its own test statistics.
# - **FiLM** (feature-wise linear modulation {cite:p}`perez2018film`; `DomainFiLM`) learns a
#   per-dataset scale and shift of every channel, $\gamma_d \odot x + \beta_d$, starting from the
#   identity.
# - **CORAL** {cite:p}`sun2016return,sun2016deepcoral` (`coral_loss`) adds a loss that pulls the covariance
#   matrices of the two datasets' features together:
#   $\ell_\text{CORAL} = \lVert C_\text{Lucchi++} - C_\text{VNC} \rVert_F^2 / (4 d^2)$, zero when the
#   covariances agree, weighted by `coral_weight`. It acts on the output of the head's first layer
#   (its stem), which trains in every regime; with LoRA its gradient also reaches the adapters.
#
# How far apart are the two datasets' patch features before and after per-dataset standardisation?
# `feature_remedy_effects` passes a corner crop of the first training slices of each dataset (its
# `crop` and `n_slices` arguments) through this profile's backbone, standardises each dataset's
# features with its own statistics (`DomainFeatureNorm`) and measures the CORAL loss before and after:

# %%
coral, feats, standardised = feature_remedy_effects(settings, {"lucchi_pp": lucchi.images, "vnc": vnc.images})
show_table(coral, caption="CORAL loss between Lucchi++ and VNC patch features", formats={"coral_loss": "{:.3g}"},
           headers={"coral_loss": "CORAL loss"}, weights_label=settings.weights_label)

# %% [markdown]
# Standardising per dataset equalises means and variances (the diagonal of the covariance), so the
# CORAL loss usually drops; what remains are the correlations between channels, which only CORAL
# itself (or a learned map such as FiLM) can change. On the smoke profile these are features of a
# **random-weights** backbone, so the two numbers show the mechanics, not DINOv2's geometry.
#
# ## Training level: change what the model is asked to fit
#
# - **Balanced sampling** (`balance=True`, chapter 5) gives both datasets the same number of items per
#   epoch.
# - **One head per dataset** (`heads_per_domain=True`) keeps the backbone (and its LoRA adapter)
#   shared and gives each dataset its own segmentation head; at test time the test set's head is used.
#   If the two datasets need different decision rules on the same features, this is the smallest
#   change that allows it.
# - **Foreground reweighting** (`fg_reweight=True`) weights each dataset's loss by the inverse of its
#   foreground fraction, normalised to mean 1, so the dataset with fewer mitochondria pixels is not
#   drowned out. The weights come from the training masks of the run:

# %%
cfg = remedy_config(settings.profile, "fg reweighting", regime="frozen", backbone=settings.backbone)
fractions = training_foreground_fractions(cfg, settings.data_dir)
show_table(pd.DataFrame({"dataset": DOMAINS, "foreground fraction": fractions,
                         "loss weight": foreground_weights(fractions)}),
           caption="Foreground fraction of each dataset's training masks, and its loss weight")

# %% [markdown]
# ## The remedy table
#
# `run_alignment_grid` trains, for each regime, the paired baseline (the paper's setting),
# one paired run per remedy, and the two single-dataset runs as references, and tests every model on
# both test sets. Runs are stored in the grid folder the other chapters share, so the baselines and
# references trained in chapter 5 are read back, not retrained. The chapter parameter `regimes` picks
# the regimes; with `"lora"` the backbone adapts too, and one head per dataset then shares one LoRA
# adapter. Each regime costs one training run per remedy plus three (baseline and references).

# %%
grid = grid_dir(settings)  # the grid folder every chapter shares
results = run_alignment_grid(settings.profile, grid, regimes=tuple(regimes), root=settings.data_dir,
                             progress=False, backbone=settings.backbone)
latents = remedy_latents(results, grid, profile=settings.profile, root=settings.data_dir,
                         device=settings.device, seed=settings.seed)
summary = alignment_summary(results, latents=latents)
print("the same runs from a shell:", chapter_command(settings, regimes=regimes, remedies=True))
if left_out_note(settings.profile, regimes):
    print(left_out_note(settings.profile, regimes))
show_table(summary, ["regime", "remedy", "kind", "iou_fg_lucchi_pp", "iou_fg_vnc", "in_domain_iou_fg", "cross_domain_iou_fg",
                    "gap_closed", "fd", "probe_auroc", "latent_space"],
           caption="Remedies for paired training", formats={"fd": "{:.2f}"})

# %% [markdown]
# How to read it: for a paired run both test sets are in-domain, so `in_domain_iou_fg` is the mean of
# its two IoU_fg and `cross_domain_iou_fg` is empty; the single-dataset references have one of each.
# `gap_closed` measures each paired run against the gap between the paired baseline (0) and the
# single-dataset in-domain scores (1): 1 means the remedy recovers what training on each dataset
# alone gives, a negative value means it makes things worse. It is left empty when that gap is
# smaller than 0.01, where the ratio would be noise.
#
# The last columns are chapter 6's latent diagnostics, measured for each run
# (`remedy_latents`): `fd` is the Fréchet distance between the image embeddings of the
# Lucchi++ test slices and the VNC slices (raw embeddings, rank-deficient covariances allowed, as the
# authors compute it), `probe_auroc` the cross-validated AUROC of a linear probe that tells the two
# datasets apart (0.5: indistinguishable). The embeddings come from the backbone the run's head sits
# on: the frozen backbone, or the backbone with the run's own LoRA adapter, fed with the slices after
# the run's input alignment. `latent_space` says what was measured. Feature-level remedies
# (feature norm, FiLM, CORAL, one head per dataset) act *after* the backbone, so for a frozen run
# their embeddings are the baseline's: their `fd` and `probe_auroc` are left empty (and they have no
# bar or point in the figures below), and `latent_space` says "not measured" rather than pretend the
# distance changed. With LoRA the adapter was trained alongside the remedy,
# so the numbers can move, but they still describe the backbone's output, not the head's input.
# The embeddings use the profile's `embedding_slices` and `embedding_long_edge` and are cached in
# the grid folder (`embeddings/`), shared with chapter 6.

# %%
plot_remedy_table(summary, weights_label=settings.weights_label)

# %% [markdown]
# The Fréchet distance per remedy, one bar per regime (the paired baseline and the single-dataset
# references are rows too), and the distance against the mean foreground IoU over both test sets:
# if the latent gap explains the collapse, remedies that shrink the distance should score higher.

# %%
plot_grouped_bars(summary, x="remedy", y="fd", color="regime", weights_label=settings.weights_label,
                  title="Fréchet distance between Lucchi++ and VNC image embeddings, per remedy")

# %%
plot_remedy_scatter(summary, weights_label=settings.weights_label)

# %% [markdown]
# ## Which remedy closes how much of the gap?
#
# On the smoke profile: none can be said. The backbone has random weights, each run trains for
# {glue:text}`training` and is tested on {glue:text}`testing`. Models this undertrained
# can predict (almost) every pixel as one class (the results mark such runs `degenerate`), so rows may
# coincide, and where rows differ the difference is noise; `gap_closed` is then a ratio of noise, or empty. The table and the figure are
# there to show that every remedy runs end to end and where its numbers will appear. The same holds
# for `fd` and `probe_auroc`: a random-weights backbone embeds {glue:text}`embedding_slices`
# downscaled slices per dataset, so
# the smoke distances and AUROCs are meaningless; they only show that the diagnostics run for every
# remedy.
#
# With the `quick` profile (pretrained DINOv2 ViT-S/14) or the `paper` profile, the same cells give the
# real answer; read them with these questions:
#
# - **Input level.** If standardisation or histogram matching closes much of the gap, the collapse was
#   mostly about grey values, something a foundation model trained on natural images might be expected
#   to shrug off. If they do little, the difference lies in texture and structure.
# - **Feature level.** Per-dataset feature statistics close the gap when the two datasets occupy
#   shifted and rescaled regions of feature space (chapter 6's Fréchet distances); CORAL and FiLM go
#   further, and a large gain there says the backbone's features are *compatible* up to a simple map.
# - **Training level.** If one head per dataset recovers the single-dataset scores while one shared
#   head does not, the backbone's features serve both datasets and only the decision rule had to
#   differ; this is the strongest hint that the backbone is foundational after all.
#
# With three VNC test slices, differences of a few IoU points are within the noise of a single seed;
# compare remedies over the profile's seeds before drawing conclusions.
#
# - **Latent diagnostics.** Chapter 6 explains the collapse by the distance between the datasets'
#   embeddings. An input remedy that lowers `fd` and `probe_auroc` *and* raises the IoU supports that
#   explanation; one that lowers the distance without helping the IoU (or the reverse) says the
#   distance is not the whole story. For feature-level remedies the table cannot say this: their
#   alignment happens after the measured space (the exercise below measures it on the head input).
#
# ## Summary
#
# - Every remedy is one `RunConfig` option; at their defaults the options change nothing, so the
#   paper's runs keep their ids.
# - Input remedies change the pixels (reference: the Lucchi++ training slices), feature remedies the
#   head's input, training remedies the sampling, the heads or the loss.
# - The remedy table compares each paired remedy with the paired baseline and the single-dataset
#   references, with the Fréchet distance and linear-probe AUROC between the datasets' embeddings of
#   each run; only pretrained profiles say which remedy works.
#
# ## Exercises
#
# :::{exercise} Combine two remedies
# :label: ex-beyond-combine
#
# Combine the two remedies that closed the largest share of the gap on your profile (for example
# histogram matching and one head per dataset) into one run, and add it to the table. Are the gains
# additive?
# :::
#
# :::{solution} ex-beyond-combine
# :class: dropdown
#
# ```python
# from emlib import run_one
#
# base = remedy_config(settings.profile, "paired baseline", regime="lora", backbone=settings.backbone)
# both = base.replace(input_alignment="histmatch", heads_per_domain=True)
# rows = run_one(both, grid, root=settings.data_dir, profile=settings.profile.name, progress=False)
# extra = pd.concat([results, rows.assign(remedy="histmatch + heads per domain")], ignore_index=True)
# alignment_summary(extra)
# ```
#
# Remedies at different levels often add up partly: an input remedy removes the grey-value part of the
# shift, after which a per-domain head has less to compensate. Compare the `gap_closed` of the
# combination with the sum of the two single remedies.
# :::
#
# :::{exercise} Scan the CORAL weight
# :label: ex-beyond-coral-weight
#
# `coral_weight=1.0` is a starting point, not a tuned value. Train the CORAL remedy with weights 0.1,
# 1 and 10 and plot the mean IoU_fg against the weight. What happens when the weight is too large?
# :::
#
# :::{solution} ex-beyond-coral-weight
# :class: dropdown
#
# ```python
# from emlib import run_one
#
# base = remedy_config(settings.profile, "paired baseline", regime="frozen", backbone=settings.backbone)
# scan = pd.concat([run_one(base.replace(coral_weight=w), grid, root=settings.data_dir,
#                           profile=settings.profile.name, progress=False).assign(coral_weight=w)
#                   for w in (0.1, 1.0, 10.0)])
# scan.groupby("coral_weight")["iou_fg"].mean()
# ```
#
# A very large weight makes the cheapest solution "features that carry no information" (equal, small
# covariances for both datasets), and the segmentation loss suffers. Deep CORAL chooses the weight so
# that both losses have the same size at the end of training.
# :::
#
# :::{exercise} Fréchet distance after standardisation
# :label: ex-beyond-fd
#
# Measure the Fréchet distance between Lucchi++ and VNC patch features before and after per-dataset
# standardisation with `emlib.diagnostics.frechet_distance`, using the `feats` computed above.
# :::
#
# :::{solution} ex-beyond-fd
# :class: dropdown
#
# ```python
# from emlib import frechet_distance
#
# flat = {k: patch_features(v).numpy() for k, v in feats.items()}
# flat_std = {k: patch_features(v).detach().numpy() for k, v in standardised.items()}
# frechet_distance(flat["lucchi_pp"], flat["vnc"]), frechet_distance(flat_std["lucchi_pp"], flat_std["vnc"])
# ```
#
# Per-dataset standardisation sets both means to zero and both variances to one, which removes the
# mean term of the Fréchet distance and most of the trace term; the remainder is due to the
# correlations between channels, the part CORAL targets. With few patches relative to the feature
# dimension the estimate is biased upwards (chapter 6), so compare distances computed from the same
# number of patches.
# :::
