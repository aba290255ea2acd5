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
# # Paired training: one model for both datasets
#
# If a foundation model were truly foundational for EM, one segmentation model trained on Lucchi++
# and VNC together should do about as well on each as a model trained on that dataset alone. The paper
# finds the opposite: **paired training collapses**, for the frozen backbone and for LoRA
# {cite:p}`fusterbarcelo2026foundational`. This chapter trains the paired runs, lays out the whole
# cross-dataset matrix (training set x test set x regime), explains the `balance` option, and shows
# the predictions of a paired model on both datasets.
#
# This page was built with the {glue:text}`profile` profile ({glue:text}`weights`; each run trains for
# {glue:text}`training`). With random weights the matrix only shows that every run and every cell is
# there; the `quick` profile gives the real picture.

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
import pandas as pd

from emlib import (build_train_dataset, chapter_command, chapter_configs, chapter_runs, chapter_settings,
                   compare_with_paper, ensure_data, evaluate_both, get_backbone_spec, grid_dir, load_trained,
                   plot_iou_matrix, plot_slice_overlay, run_folder, scored_rows)
from emlib import glue_facts, page_facts, show_table

settings = chapter_settings(profile, backbone=backbone, data_dir=data_dir, weights_dir=weights_dir,
                            device=device, seed=seed, out_dir=out_dir)
paths = ensure_data(settings)
facts = glue_facts(page_facts(settings))  # the numbers the text quotes, from the profile
settings

# %% [markdown]
# ## What "paired" means, and the balance option
#
# A paired run ({term}`paired training`) draws its training items from both datasets
# (`emlib.data.PairedDataset`). The two are far from equal in size: Lucchi++ has 165 training slices of
# 768 x 1024 (83 in the copy staged for this book), VNC only 17 of 1024 x 1024. With `balance=False`
# (the default) the items are simply pooled, so Lucchi++ dominates every epoch. With `balance=True`
# (the authors' "paired balance" ablation) items alternate between the datasets and an epoch ends when
# the smaller one is used up, so both contribute equally. Counted with this profile's tiling on all
# training slices:

# %%
paired_cfg = chapter_configs(settings, regimes=("lora",), train_sets=("paired",))[0]
rows = {}
for balance in (False, True):
    ds = build_train_dataset(paired_cfg.replace(train_slices=None, balance=balance),
                             patch_size=get_backbone_spec(settings.backbone).patch_size,
                             mean=(0.5,) * 3, std=(0.25,) * 3, root=settings.data_dir)
    rows[f"balance={balance}"] = {"items per epoch": len(ds),
                                  **{f"{n} items available": len(s) for n, s in zip(ds.names, ds.sources)}}
pd.DataFrame(rows).T

# %% [markdown]
# Without balance most items are Lucchi++ (the counts above); with balance each dataset gives half of
# every epoch, so most Lucchi++ items are left out of any single epoch. Balance fixes *how often*
# each dataset is seen, not *how different* they look: if the collapse came only from the imbalance,
# balance would undo it. The exercise at the end trains a balanced run.
#
# ## The whole grid
#
# `chapter_runs` with no restriction trains every run of the profile (frozen, LoRA and the U-Net
# {cite:p}`ronneberger2015unet` baseline trained from scratch, each on Lucchi++, VNC and paired),
# reusing the runs of earlier chapters. Each model is tested on both test sets; `scored_rows` keeps
# each test set alone against the true labels (the table also holds the pooled rows shown further down).

# %%
runs = chapter_runs(settings)
results = scored_rows(runs)
print("the same runs from a shell:", chapter_command(settings))
show_table(results, ["train_set", "regime", "test_set", "in_domain", "iou_fg"], caption="Every run of the grid")

# %% [markdown]
# ## The cross-dataset matrix
#
# One heatmap per regime: rows are training sets, columns test sets, colour and text the IoU_fg. The
# diagonal of the top two rows is single-dataset in-domain; the `paired` row is in-domain for both
# columns. (The U-Net is trained from scratch, so its panel does not depend on backbone weights; the
# title names the backbone's weights.)

# %%
plot_iou_matrix(results, title="IoU_fg: training set x test set, per regime", weights_label=settings.weights_label)

# %% [markdown]
# ## Paired against single-dataset, in-domain
#
# The paper's claim compares, for each test set, the paired model with the model trained on that test
# set's dataset alone. Computed from the table (negative differences mean paired is worse):

# %%
fm = results[results["in_domain"] & results["regime"].isin(["frozen", "lora"])]
cells = fm.assign(trained_on=fm["train_set"].where(fm["train_set"] == "paired", "single dataset"))
cells = cells.pivot_table(index=["regime", "test_set"], columns="trained_on", values="iou_fg")
cells["paired - single"] = cells["paired"] - cells["single dataset"]
show_table(cells.reset_index(), caption="In-domain IoU_fg per regime and test set: paired against single-dataset",
           weights_label=settings.weights_label)

# %%
check = compare_with_paper(results, None, profile=settings.profile.name)
show_table(check[check["claim_id"] == "paired_collapses"], ["claim", "book_value", "holds", "detail"],
           caption="The paper's claim, checked on this build's runs")

# %% [markdown]
# ## The authors' number: both test sets pooled
#
# The authors test a paired run once, on their composed test folder, which holds the Lucchi++ and
# the VNC test slices together, and pool the pixel counts over all of them
# (`scripts/eval_em_seg.py` in `uhlmanngroup/MicroscopyFoundationHub`). Every run of
# the results table has that number too, as the rows with `test_set == "mixed"`. Pooled counts weigh
# each dataset by its test pixels, so the mixed number sits near the dataset with more of them and can
# hide a collapse on the other; the per-test-set columns show both.

# %%
paired_rows = scored_rows(runs[runs["train_set"] == "paired"], test_sets=("lucchi_pp", "vnc", "mixed"))
show_table(paired_rows.pivot_table(index="regime", columns="test_set", values="iou_fg").reset_index(),
           caption="Paired runs: IoU_fg per test set and on both test sets pooled ('mixed'), true labels",
           weights_label=settings.weights_label)

# %% [markdown]
# With random weights (the `smoke` profile) this verdict is about models whose backbone learned
# nothing, trained for {glue:text}`epochs` epochs, and says nothing about the paper.
#
# ## What a paired model predicts
#
# The paired LoRA model, rebuilt from its run folder, on one evaluated slice of each test set. Green:
# true positives; orange-red: false positives; blue: false negatives (missed mitochondria). With
# pretrained weights this is where the collapse becomes visible, typically as large FP or FN areas on
# one of the two datasets.

# %%
trained = load_trained(run_folder(paired_cfg, grid_dir(settings), root=settings.data_dir), device=settings.device)
_, predicted = evaluate_both(trained, root=settings.data_dir, keep_predictions=True)
for test_set, res in predicted.items():
    plot_slice_overlay(res.images[0], res.masks[0], res.predictions[0],
                       title=f"paired LoRA on {test_set} (slice {res.slice_ids[0]})",
                       weights_label=settings.weights_label).show()

# %% [markdown]
# Chapter 6 looks inside the backbone for the reason: how far apart the two datasets are in its
# embedding space, before and after LoRA.
#
# ## Summary
#
# - Paired training pools Lucchi++ and VNC; without balance Lucchi++ dominates, with `balance=True`
#   both contribute equally per epoch.
# - The cross-dataset matrix shows every (training set, test set, regime) cell; the paper's claim is
#   about paired versus single-dataset in-domain cells, computed here from the results.
# - Overlays show where a paired model goes wrong.
#
# ## Exercises
#
# :::{exercise} Balanced paired training
# :label: ex-paired-balance
#
# Train the paired LoRA run with `balance=True` and add its in-domain IoU_fg to the comparison above.
# Does balancing the datasets recover the single-dataset scores?
# :::
#
# :::{solution} ex-paired-balance
# :class: dropdown
#
# ```python
# from emlib import run_one
# balanced = run_one(paired_cfg.replace(balance=True), grid_dir(settings), root=settings.data_dir,
#                    profile=settings.profile.name, progress=False)
# scored_rows(balanced)[["test_set", "balance", "iou_fg"]]
# ```
#
# The balanced run has its own folder (the config, hence the run id, differs). Compare its two rows
# with the `paired` and `single dataset` columns of the table. If balance closes most of the gap, the
# collapse was mainly imbalance; if not, the datasets themselves pull the shared model apart, which
# is what the latent diagnostics of the next chapter measure. Only a pretrained profile answers this.
# :::
#
# :::{exercise} Does the U-Net collapse too?
# :label: ex-paired-unet
#
# Does the U-Net trained from scratch also lose in-domain IoU_fg when trained paired? Compute the same
# "paired - single" table for `regime == "unet"`.
# :::
#
# :::{solution} ex-paired-unet
# :class: dropdown
#
# ```python
# from emlib import run_one
#
# u = results[results["regime"] == "unet"]
# if u.empty:  # a profile whose grid has no U-Net (paper: the authors trained none): train it here
#     u = scored_rows(pd.concat([run_one(c.replace(regime="unet"), grid_dir(settings), root=settings.data_dir,
#                                        profile=settings.profile.name, progress=False)
#                                for c in chapter_configs(settings, regimes=("lora",))]))
# u = u[u["in_domain"]]
# u.assign(trained_on=u["train_set"].where(u["train_set"] == "paired", "single dataset")
#          ).pivot_table(index="test_set", columns="trained_on", values="iou_fg")
# ```
#
# The U-Net has no pretrained features to share, so it is the supervised reference: if it handles
# both datasets in one model while the foundation-model regimes do not, the problem lies in the
# backbone's features rather than in the task.
# :::
