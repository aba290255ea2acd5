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
# # The data: Lucchi++ and VNC
#
# The paper asks whether one segmentation model, built on a vision foundation model, can serve two
# electron-microscopy (EM) datasets at once {cite:p}`fusterbarcelo2026foundational`. Before any model,
# this chapter looks at the two datasets: how they were acquired, how large a pixel is, what the grey
# values look like, how much of each slice is mitochondria, and three traps that silently break a
# reimplementation (image/label pairing, swapped splits, and the VNC test slices).
#
# Everything here is read from the files on disk with `emlib.data`; no model is involved, so the
# numbers are the same for every profile.

# %% tags=["parameters"]
profile = "smoke"               # smoke (CPU, random weights), quick or paper
backbone: str | None = None     # None: the profile's backbone
data_dir: str | None = None     # None: $EMLIB_DATA, else download into a cache
weights_dir: str | None = None  # None: $EMLIB_WEIGHTS, else the model hubs
device = "auto"                 # "auto": the GPU when there is one, else the CPU
seed: int | None = None         # None: the profile's seeds; an integer: only that seed
out_dir = "runs"

# %% [markdown]
# The cell above holds the chapter's parameters (papermill replaces them when the book is built).
# `chapter_settings` resolves them against the profile from `emlib.config`; the table says what this
# page was made with.

# %%
import random

import pandas as pd

pd.set_option("display.max_colwidth", None)

from emlib import (DATASETS, VNC_TEST_SLICES, chapter_settings, dataset_dir, dataset_summary, ensure_data,
                   load_volume, physical_extent_table, plot_intensity_histograms, plot_slice_browser, show_table,
                   slice_viewer)

settings = chapter_settings(
    profile, backbone=backbone, data_dir=data_dir, weights_dir=weights_dir,
    device=device, seed=seed, out_dir=out_dir)
settings

# %% [markdown]
# ## Two microscopes, two animals
#
# | | Lucchi++ | VNC |
# |---|---|---|
# | tissue | mouse hippocampus, CA1 region | *Drosophila* third-instar larva (L3), ventral nerve cord |
# | microscope | FIB-SEM: a focused ion beam mills a thin layer off the block, the electron beam images the new face | ssTEM: the block is cut into thin sections, each imaged in transmission |
# | voxel (z, y, x) | 5 x 5 x 5 nm, isotropic | about 47.5 x 4.6 x 4.6 nm (sections 45-50 nm thick) |
# | slices | 165 per split, 768 x 1024 | 20 labelled (stack 1) + 20 unlabelled (stack 2), 1024 x 1024 |
# | labels | mitochondria, re-annotated by {cite:t}`casser2020fast` ("++") | mitochondria {cite:p}`gerhard2013segmented` |
# | source | {cite:t}`lucchi2012supervoxel` | {cite:t}`gerhard2013segmented` |
#
# Both show neural tissue at a similar pixel size, and both label mitochondria. That is what makes the
# pair interesting: to a biologist they are "the same task", while the images differ in organism,
# preparation, microscope and contrast. The registry in `emlib.data` records where each comes from
# and its licence.

# %%
paths = ensure_data(settings)
pd.DataFrame([{"dataset": s.title, "licence": s.license, "cite": s.citation}
              for s in DATASETS.values()]).set_index("dataset")

# %% [markdown]
# ## What is on disk
#
# `dataset_summary` reads every split once and counts slices, the foreground fraction (the share of
# pixels labelled mitochondria) and the mean grey value (shapes and voxel sizes come next). VNC `unlabelled` is stack 2, whose labels were never
# released, so its foreground fraction is empty: it can feed embeddings, never IoU.

# %%
summary = dataset_summary(root=settings.data_dir)
show_table(summary, [c for c in summary.columns if c not in ("height", "width", "voxel_size_nm")],
           formats={"foreground_fraction": "{:.2%}", "mean_intensity": "{:.1f}"},
           caption="Each split on disk: slices, foreground fraction and mean grey value")

# %% [markdown]
# Mitochondria cover only 5-7 % of the pixels in both datasets. A model that predicts "background"
# everywhere is 93-95 % accurate, which is why the paper (and this book) scores segmentation with the
# **foreground IoU**, the overlap of predicted and true mitochondria, and never with pixel accuracy.
#
# ## Reading slices
#
# `load_volume` returns a `Volume`: a read-only `(Z, H, W)` uint8 stack, the boolean masks, the file
# stem of each slice and the voxel size. For VNC we read split `all` (stack 1, 20 labelled slices). On
# the smoke profile only the first few slices are read.

# %%
n = settings.view_slices
lucchi = load_volume("lucchi_pp", "test", root=settings.data_dir, slices=n)
vnc = load_volume("vnc", "all", root=settings.data_dir, slices=n)
lucchi.shape, vnc.shape, lucchi.slice_ids[:3], vnc.slice_ids[:3]

# %% [markdown]
# The voxel sizes turn pixels into micrometres. In the image plane the two are close (5 nm against
# 4.6 nm), so 224 pixels span about 1.1 µm in Lucchi++ and 1.0 µm in VNC. Along z they are not:
# VNC sections are nearly ten times thicker than its pixels, so neighbouring VNC slices differ much more
# than neighbouring Lucchi++ slices. Everything in this study works slice by slice (2-D), so z only
# matters for how similar consecutive training slices are.

# %%
physical_extent_table({"Lucchi++": lucchi, "VNC": vnc})

# %% [markdown]
# ## Looking at the slices
#
# The viewers below run in the browser (a plotly slider, no Python needed); mitochondria are shaded
# orange. Slices are downsampled for display. Lucchi++ (FIB-SEM) looks soft and low in contrast:
# grey membranes around large, smooth neurite profiles, and mitochondria as darker grey ovals. VNC
# (ssTEM) looks sharper and harder: thin black membranes around many small profiles, and mitochondria
# whose inner membranes (cristae) show as dark stripes. Same organelle, different picture.

# %%
plot_slice_browser(
    lucchi.images, lucchi.masks, slice_labels=lucchi.slice_ids,
    title="Lucchi++ (FIB-SEM, mouse), test split; mitochondria in orange")

# %%
plot_slice_browser(
    vnc.images, vnc.masks, slice_labels=vnc.slice_ids,
    title="VNC (ssTEM, Drosophila), stack 1; mitochondria in orange")

# %% [markdown]
# In a live Jupyter or Colab session, the cell below also gives a widget viewer at higher resolution
# (it needs a running kernel, so the static book skips it).

# %%
if settings.live:
    from IPython.display import display

    display(slice_viewer(lucchi))

# %% [markdown]
# ## Grey values
#
# A foundation model never sees "mitochondria"; it sees grey values. The histograms show the fraction
# of pixels at each grey level, for each dataset and separately for the pixels inside and outside
# the masks.

# %%
plot_intensity_histograms({"Lucchi++": lucchi.images, "VNC": vnc.images},
                          title="Grey-value histograms (all pixels)")

# %%
pixels = {}
for name, v in {"Lucchi++": lucchi, "VNC": vnc}.items():
    pixels[f"{name} mitochondria"] = v.images[v.masks]
    pixels[f"{name} background"] = v.images[~v.masks]
plot_intensity_histograms(
    pixels, title="Grey values inside and outside the mitochondria masks")

# %% [markdown]
# Over the full splits (the summary table above), Lucchi++ has a mean grey value near 141 and VNC near
# 129, and VNC spreads much wider (standard deviation about 55 against 31, from the staged data's
# README). The same object class therefore sits at different grey values, with a different texture,
# in the two datasets; in both, mitochondria are darker than their surroundings, but the gap and the
# texture differ. This is a **covariate shift**: the input distribution $p(x)$ changes while the
# task (is this pixel mitochondria?) stays the same. Chapter 2 asks how a foundation model's features
# see this shift.
#
# ## Trap 1: pairing images with labels
#
# Lucchi++ names images `mask0000.png ... mask0164.png` (yes, the *images* are called "mask") and labels
# `0.png ... 164.png`. Sorting both folders and zipping them looks harmless:

# %%
folder = dataset_dir("lucchi_pp", settings.data_dir)
images = sorted(p.name for p in (folder / "Test_In").iterdir())[:6]
labels = sorted(p.name for p in (folder / "Test_Out").iterdir())[:6]
pd.DataFrame({"sorted images": images, "sorted labels": labels})

# %% [markdown]
# String sorting orders the labels `0, 1, 10, 100, 101, ...`, so the third image would be trained
# against the label of slice 10. The right rule is **`maskNNNN.png` pairs with `int(NNNN).png`**,
# which is what the authors' single-dataset configs do (`image_prefix: "mask"`, `zfill_width: 4`) and
# what `read_volume` does: the slice ids it returns are the image stems, each matched to its own label.
# The script the authors published to compose their *paired* set does zip the sorted lists; the
# chapter *The published paired set* audits what that does.
# (`tests/data/test_read.py` checks this on a tiny copy whose labels encode their slice number, so
# a sorted-name pairing would fail.)
#
# ## Trap 2: which split is "train"
#
# The official archive has `Train_In/Train_Out` and `Test_In/Test_Out`, 165 slices each. The paper
# trains on `Train_*` and tests on `Test_*`. The popular torch-em loader swaps them: it writes
# `Test_*` into `lucchi_train.h5` and `Train_*` into `lucchi_test.h5`. A port that starts from torch-em
# without noticing reports numbers on the other half of the volume. `emlib` names splits after the
# archive folders. (The copy staged for this project keeps every second training slice, 83 of 165,
# to stay small; the test split is complete, so test IoU is computed on exactly the paper's test set.)
#
# ## Trap 3: the VNC test slices
#
# VNC has no official split. The authors' data script sorts the 20 stack-1 pairs by name, shuffles them
# with `random.Random(42)` and keeps `round(0.85 * 20) = 17` for training. We can replay it:

# %%
stems = [f"{i:02d}" for i in range(20)]
random.Random(42).shuffle(stems)
test = sorted(stems[round(0.85 * 20):])
test, [f"{i:02d}" for i in VNC_TEST_SLICES]

# %% [markdown]
# The three test slices are **00, 03 and 08**, exactly `emlib.data.VNC_TEST_SLICES`; the other 17 form
# `read_volume("vnc", "train")`. With only three test slices, a VNC IoU is a noisy number: one unusual
# slice moves it a lot, which later chapters keep in mind when comparing runs.
#
# ## Summary
#
# - Lucchi++ (FIB-SEM, mouse, 5 nm isotropic) and VNC (ssTEM, fly, 4.6 nm pixels, ~50 nm sections) show
#   the same structure, mitochondria, at similar pixel sizes but with different grey values and texture.
# - Mitochondria are 5-7 % of the pixels, so accuracy is meaningless and foreground IoU is the score.
# - Pair `maskNNNN.png` with `int(NNNN).png`; train on `Train_*`, test on `Test_*` (not torch-em's swap);
#   VNC tests on slices 00, 03, 08.
#
# ## Exercises
#
# :::{exercise} Foreground per slice
# :label: ex-data-fg-per-slice
#
# The foreground fraction in the summary is an average over a split. Compute it per slice for the
# slices loaded above (`lucchi.masks`, `vnc.masks`). Which dataset varies more from slice to slice,
# and what does that mean for a test set of only three VNC slices?
# :::
#
# :::{solution} ex-data-fg-per-slice
# :class: dropdown
#
# The mean over the two image axes gives one fraction per slice:
#
# ```python
# per_slice = {name: pd.Series(v.masks.mean(axis=(1, 2))).describe()
#              for name, v in {"Lucchi++": lucchi, "VNC": vnc}.items()}
# pd.DataFrame(per_slice)
# ```
#
# Lucchi++ slices are 5 nm apart, so consecutive slices are almost the same image and their fractions
# barely change. VNC sections are about ten times further apart and the fraction changes more from
# slice to slice. With three test slices, which three were drawn matters: report VNC IoU per slice, or
# with its spread, rather than as one exact number.
# :::
#
# :::{exercise} Pair the Lucchi++ files yourself
# :label: ex-data-pairing
#
# Write the correct pairing of Lucchi++ test images and labels with only `pathlib` and `re`, and
# check that it gives the same first five pairs as `lucchi.slice_ids`.
# :::
#
# :::{solution} ex-data-pairing
# :class: dropdown
#
# ```python
# import re
# pairs = sorted((int(m.group(1)), p.name, f"{int(m.group(1))}.png")
#                for p in (folder / "Test_In").iterdir()
#                if (m := re.match(r"mask(\d{4})\.png$", p.name)))
# [name for _, name, _ in pairs[:5]], lucchi.slice_ids[:5]
# ```
#
# Sorting by the parsed integer (not the file name) and building the label name from it gives
# `mask0000.png -> 0.png`, `mask0001.png -> 1.png`, ... in slice order, the same order as `slice_ids`.
# :::
#
# :::{exercise} What one patch covers
# :label: ex-data-fov
#
# A ViT-S/14 reads 14 x 14-pixel patches. How many nanometres does one patch cover in each dataset, and
# how many patches does one mitochondrion of 500 nm diameter span?
# :::
#
# :::{solution} ex-data-fov
# :class: dropdown
#
# At full resolution a patch covers 14 x 5 = 70 nm in Lucchi++ and 14 x 4.6 = 64.4 nm in VNC, so a
# 500 nm mitochondrion spans about 7-8 patches across. The authors resize whole slices to a long side of
# 1022 pixels: Lucchi++ (1024 wide) barely changes, VNC (1024 x 1024) too, so the numbers hold for the
# paper's protocol. A crop-based pipeline at another scale would change them.
# :::
