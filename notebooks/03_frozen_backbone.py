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
# # A frozen backbone and a light head
#
# The simplest way to use a foundation model for segmentation is to leave it alone: the backbone is
# **frozen** ({term}`frozen backbone`) and only a small {term}`segmentation head` on top of its patch tokens learns
# to turn them into a mitochondria mask. This is the paper's first regime
# {cite:p}`fusterbarcelo2026foundational`. This chapter builds that model, counts what it trains,
# explains why frozen runs can cache the backbone's features, trains one model per dataset and tests
# each on both test sets.
#
# This page was built with the {glue:text}`profile` profile: the backbone has {glue:text}`weights`, and
# each run trains for {glue:text}`training` and is tested on {glue:text}`testing`. With random weights
# (the `smoke` profile) the numbers below only show that the pipeline runs; the `quick` profile
# (pretrained DINOv2 {cite:p}`oquab2023dinov2`, a Colab GPU) gives numbers worth reading.

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
# `chapter_settings` resolves them against the profile; the table says what this page was made with.

# %%
import pandas as pd

from emlib import (backbone_passes, build_model, build_train_dataset, cache_sentence, chapter_command,
                   chapter_configs, chapter_runs, chapter_settings, count_parameters, ensure_data, evaluate_both,
                   get_backbone_spec, get_profile, glue_facts, grid_dir, head_sentence, load_trained, page_facts, plot_slice_overlay,
                   prediction_sentence, scored_rows, SegHeadDeconv, show_table)

settings = chapter_settings(profile, backbone=backbone, data_dir=data_dir, weights_dir=weights_dir,
                            device=device, seed=seed, out_dir=out_dir)
paths = ensure_data(settings)
facts = glue_facts(page_facts(settings))  # the numbers the text quotes, from the profile
settings

# %% [markdown]
# ## The model: backbone, then head
#
# A ViT cuts the image into 14 x 14-pixel patches and returns one token (a vector of `embed_dim`
# numbers) per patch, so a crop of side $s$ becomes an $s/14 \times s/14$ grid of tokens. The head maps
# that grid back to pixels; which head a run builds is its `RunConfig`'s `head`.
#
# `build_model` assembles a run's model from its `RunConfig`; `count_parameters` counts what trains.

# %%
cfg = chapter_configs(settings, regimes=("frozen",), train_sets=("lucchi_pp",))[0]
built = build_model(cfg)  # the model, and the patch size and normalisation of its inputs
glue_facts(head=head_sentence(cfg, embed_dim=built.model.backbone.embed_dim))  # the sentence below, from the config
model = built.model
counts = pd.DataFrame({"backbone": count_parameters(model.backbone), "head": count_parameters(model.head),
                       "whole model": count_parameters(model)}).T
counts["trainable share"] = counts["trainable"] / counts["total"]
show_table(counts, index=True, formats={"trainable": "{:,}", "total": "{:,}", "trainable share": "{:.1%}"},
           caption=f"Parameters of the frozen model ({cfg.backbone}, patch {built.patch_size}): trainable and total")

# %% [markdown]
# {glue:text}`head`
#
# Every backbone parameter is frozen, so the head is all that learns. The profile sets the head
# (`head`) and, for `SegHeadDeconv`, its width (`head_channels`). The same count for the `paper`
# profile's head on the tokens of its backbone, built without any weights:

# %%
paper = get_profile("paper").base
paper_dim = get_backbone_spec(paper.backbone).embed_dim
paper_head = SegHeadDeconv(paper_dim, base_ch=paper.head_channels)
pd.DataFrame({"this profile": [cfg.backbone, model.backbone.embed_dim, cfg.head,
                               cfg.head_channels if cfg.head == "deconv" else "none (linear)",
                               count_parameters(model.head)["total"]],
              "paper": [paper.backbone, paper_dim, paper.head, paper.head_channels,
                        count_parameters(paper_head)["total"]]},
             index=["backbone", "token size", "head", "head width", "head parameters"])

# %% [markdown]
# ## Why frozen runs can cache features
#
# With a frozen backbone, the tokens of a given crop are the same in every epoch, and in every frozen
# run of that backbone: no weight of the backbone changes. A frozen run's training items are therefore
# the fixed tiles of its training slices (each epoch draws some of them), and `emlib.train.fit` takes
# their tokens from a feature store (`emlib.featurestore`, keyed on the backbone, the content of its
# weights and of the data, the input transform and the tile size): a tile's tokens are computed the
# first time any run draws it and fed straight to the head afterwards, in later epochs and in later runs
# (other heads, the feature-level remedies of chapter 8, the paired run). The evaluation does the same
# for the windows of the test slices. This only works when the same pixels come back: random crops
# and augmentation, or a LoRA adapter (next chapter) changing the backbone, give new tokens every
# time, and then nothing can be stored.
#
# ## Training one model per dataset
#
# `chapter_runs` trains the runs this chapter needs, with the same configurations (and run folders)
# as `emlib grid --profile <profile>`. A run whose folder already holds its results is read back
# instead of retrained, so later chapters reuse these runs. Each model is tested on **both** test
# sets; IoU_fg pools the pixel counts over the test slices. The results table also scores every model
# on the two test sets pooled and against the labels the authors' published script gives the test
# images (chapters 5 and 5b); `scored_rows` keeps the rows of each test set alone against the true
# labels, the cross-dataset matrix.

# %%
results = scored_rows(chapter_runs(settings, regimes=("frozen",), train_sets=("lucchi_pp", "vnc")))
print("grid folder:", grid_dir(settings))
print("the same runs from a shell:", chapter_command(settings, regimes=("frozen",), train_sets=("lucchi_pp", "vnc")))
show_table(results, ["train_set", "test_set", "in_domain", "n_test_slices", "iou_fg", "dice_fg", "train_seconds"],
           caption="Frozen runs, each model on both test sets", formats={"train_seconds": "{:.1f}"})

# %% [markdown]
# Rows with `in_domain = True` test on the training dataset's own test set; the others are the
# cross-dataset test. The same numbers as a train x test table:

# %%
show_table(results.pivot_table(index="train_set", columns="test_set", values="iou_fg"), index=True,
           caption="IoU_fg: training set (rows) x test set (columns)", weights_label=settings.weights_label)

# %% [markdown]
# The loss per epoch, with the time each epoch took (`seconds`) and how many training items the
# backbone computed in it (`backbone passes`, counted by `fit`: at most the items no earlier epoch drew,
# fewer when an earlier run of this backbone stored them).
# On this page: {glue:text}`cache`

# %%
run_dir = grid_dir(settings) / results["run_id"].iloc[0]
n_items = len(build_train_dataset(cfg, patch_size=built.patch_size, mean=built.mean, std=built.std,
                                  root=settings.data_dir))
glue_facts(cache=cache_sentence(cfg, n_items))
history = pd.read_csv(run_dir / "history.csv").rename(columns={"backbone_passes": "backbone passes"})
if "backbone passes" not in history:  # a run trained before fit counted them: the count with an empty store
    history["backbone passes"] = backbone_passes(cfg, n_items)
show_table(history, caption=f"Loss per epoch of {results['run_id'].iloc[0]}", weights_label=settings.weights_label)

# %% [markdown]
# ## Looking at the predictions
#
# A score hides where the errors are. `load_trained` rebuilds the Lucchi++ model from its folder and
# `evaluate_both(..., keep_predictions=True)` returns the test slices, masks and predictions (on this
# profile: {glue:text}`testing`). Green pixels are true positives (TP), orange-red
# false positives (FP, predicted but not mitochondria) and blue false negatives (FN, missed).

# %%
trained = load_trained(run_dir, device=settings.device)
_, predicted = evaluate_both(trained, root=settings.data_dir, keep_predictions=True)
glue_facts(predictions=prediction_sentence(predicted, pretrained=settings.pretrained))
for test_set, res in predicted.items():
    plot_slice_overlay(res.images[0], res.masks[0], res.predictions[0],
                       title=f"frozen, trained on {cfg.train_set}, tested on {test_set} (slice {res.slice_ids[0]})",
                       weights_label=settings.weights_label).show()

# %% [markdown]
# What this page's predictions look like, over all evaluated slices: {glue:text}`predictions`
#
# ## Summary
#
# - Frozen regime: the backbone never changes; only the head (`SegHeadDeconv` for the authors, the
#   profile's `head` here) trains, a small share of the model's parameters.
# - Because the backbone is frozen, its tokens can be computed once per tile and stored; the store saves
#   time when the same tiles come back, in later epochs and in every later frozen run of the backbone.
# - Every model is tested on both test sets; the off-diagonal cells are the cross-dataset test.
#
# ## Exercises
#
# :::{exercise} A linear head
# :label: ex-frozen-linear-head
#
# `RunConfig` offers two heads: `head="deconv"` (`SegHeadDeconv`) and `head="linear"` (a single 1 x 1
# convolution on the tokens, upsampled bilinearly). Build the model for the same configuration with the
# head this page did *not* use (`cfg.head` says which it used) and compare the two heads' trainable parameters.
# :::
#
# :::{solution} ex-frozen-linear-head
# :class: dropdown
#
# ```python
# other = build_model(cfg.replace(head="linear" if cfg.head == "deconv" else "deconv")).model
# count_parameters(other.head), count_parameters(model.head)
# ```
#
# A linear head has `embed_dim * 2 + 2` parameters (two output classes), far fewer than the
# deconvolution head. It can only draw masks at the token resolution (one value per 14 x 14 patch,
# smoothed), which is why the authors' head adds up-sampling blocks.
# :::
#
# :::{exercise} IoU from pixel counts
# :label: ex-frozen-fp-fn
#
# Count TP, FP and FN pixels of the predictions above for each test set and recompute IoU_fg from them
# as TP / (TP + FP + FN). Does it match the table?
# :::
#
# :::{solution} ex-frozen-fp-fn
# :class: dropdown
#
# ```python
# for test_set, res in predicted.items():
#     tp = (res.predictions & res.masks).sum()
#     fp = (res.predictions & ~res.masks).sum()
#     fn = (~res.predictions & res.masks).sum()
#     print(test_set, tp / max(tp + fp + fn, 1))
# ```
#
# The counts are pooled over all evaluated slices before dividing, exactly as `emlib.evaluation` does,
# so the values equal the `iou_fg` column of the Lucchi++-trained model.
# :::
