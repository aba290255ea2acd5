# ---
# jupyter:
#   emlib:
#     colab_setup:
#       families: true
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # What a foundation model sees
#
# The paper puts three families of vision foundation models under a small segmentation head:
# DINOv2 {cite:p}`oquab2023dinov2` and DINOv3 {cite:p}`simeoni2025dinov3`, trained by self-distillation
# on large curated collections of web images, and OpenCLIP {cite:p}`cherti2023reproducible`, the open
# reproduction of CLIP {cite:p}`radford2021learning`, trained to match web images with their captions.
# All three are Vision Transformers (ViTs, {cite:t}`dosovitskiy2021vit`), and none was trained on
# electron micrographs.
#
# This chapter follows one EM slice into such a model: how it is resized and cut into patches, how grey
# values are normalised, and what the output **patch tokens** look like when their first three
# principal components are painted as colours, the picture that made DINO famous.

# %% tags=["parameters"]
profile = "smoke"               # smoke (CPU, random weights), quick or paper
backbone: str | None = None     # None: the profile's backbone
data_dir: str | None = None     # None: $EMLIB_DATA, else download into a cache
weights_dir: str | None = None  # None: $EMLIB_WEIGHTS, else the model hubs
device = "auto"                 # "auto": the GPU when there is one, else the CPU
seed: int | None = None         # None: the profile's seeds; an integer: only that seed
out_dir = "runs"

# %% [markdown]
# On the **smoke** profile the backbones have **random weights** (no pretrained weights can be downloaded
# where the book is tested), and every figure title below says so. Run the chapter with
# `profile = "quick"` (Colab, or anywhere with internet) to see pretrained features.

# %%
from emlib import (PAPER_CLAIMS, backbone_view, chapter_settings, family_backbones, glue_facts, load_backbones,
                   load_volume, normalize, page_facts, plot_patch_grid, plot_patch_pca, protocol_size,
                   token_grid_table, token_pca)

settings = chapter_settings(
    profile, backbone=backbone, data_dir=data_dir, weights_dir=weights_dir,
    device=device, seed=seed, out_dir=out_dir)
paper = {c.claim_id: c.paper_value for c in PAPER_CLAIMS}  # the paper's numbers, from emlib.paper
facts = glue_facts(page_facts(settings),  # the numbers the text quotes: the profile's and the paper's
                   paper_fd_frozen=paper["fd_frozen"], paper_fd_lora=paper["fd_lora"],
                   paper_probe_accuracy=paper["probe_accuracy"], paper_probe_auroc=paper["probe_auroc"])
settings

# %% [markdown]
# ## From a slice to a grid of patches
#
# A ViT with patch size $p$ cuts an $H \times W$ image into non-overlapping $p \times p$ patches, embeds
# each one linearly, and lets all of them attend to each other through its transformer blocks. The last
# layer returns one vector, a **patch token**, per patch: a grid of
#
# $$N = \frac{H}{p} \cdot \frac{W}{p}$$
#
# tokens of width $C$ (384 for ViT-S, 1024 for ViT-L), plus a class token and, for DINOv3, four
# register tokens {cite:p}`darcet2024registers` that emlib drops. Both sides must be multiples of
# $p$. The authors resize each whole slice so that its long side is 1022 pixels and floor both sides
# to a multiple of the patch size:

# %%
(protocol_size(768, 1024), protocol_size(768, 1024, multiple=16),
 protocol_size(1024, 1024))

# %% [markdown]
# A Lucchi++ slice (768 x 1024) becomes 756 x 1022 for the patch-14 models, 752 x 1008 for patch 16.
# The table gives the grids for both datasets:

# %%
token_grid_table({"Lucchi++": (768, 1024), "VNC": (1024, 1024)})

# %% [markdown]
# So a segmentation head on DINOv2 sees a Lucchi++ slice as 54 x 73 tokens, each standing for a
# 14-pixel (about 70 nm) square: a mitochondrion of half a micrometre spans a handful of tokens. The
# head must upsample from this coarse grid back to pixels, which is why thin structures are hard.
#
# ## One slice of each dataset
#
# We take the first test slice of each dataset. On the smoke profile the backbone sees a 224 x 224
# crop, the window with the most mitochondria, at full resolution; on quick and paper it sees the whole
# slice resized as above (long side from the profile).

# %%
root = settings.data_dir
lucchi = load_volume("lucchi_pp", "test", root=root, slices=[0])
vnc = load_volume("vnc", "test", root=root, slices=[0])
volumes = {"Lucchi++": lucchi, "VNC": vnc}
view, mask = backbone_view(lucchi.images[0], lucchi.masks[0], 14,
                           settings)
view.shape, round(float(mask.mean()), 3)

# %%
grid = f"{view.shape[0] // 14} x {view.shape[1] // 14}"
plot_patch_grid(
    view, 14, title=f"Lucchi++ as a patch-14 model sees it: {grid} patches")

# %% [markdown]
# ## Normalisation
#
# The models were trained on RGB photographs. A grey EM slice is scaled to $[0, 1]$, copied into three
# identical channels and standardised with the ImageNet mean and standard deviation. The authors do
# this for every backbone, OpenCLIP included (whose own statistics differ slightly), and so does
# `emlib.data.normalize`:

# %%
x = normalize(view)
x.shape, x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))

# %% [markdown]
# The three channels hold the same grey image, shifted and scaled a little differently, where a
# photograph has three different colour channels; and the standard deviations printed above are well
# below 1, the spread ImageNet photographs have after the same normalisation, because an EM slice uses
# a narrow band of grey values. The model has never seen inputs like these: the covariate shift starts
# at the input.
#
# ## Three backbone families
#
# `family_backbones` picks one backbone per family: the chapter's backbone for its family and small
# models for the others (`dinov3_vits16`, `openclip_vitb16`) on the smoke and quick profiles. A backbone
# whose pretrained weights cannot be loaded here is left out, and a note under the table says which,
# why, and how to add it.

# %%
backbones = load_backbones(family_backbones(settings), settings)
backbones  # a table of the loaded backbones; a note names any left out for missing weights

# %% [markdown]
# ## Patch tokens as colours
#
# For each backbone we pass the Lucchi++ and the VNC view through it, collect the patch tokens (a grid
# of $C$-dimensional vectors per view), fit **one** PCA with three components on the tokens of both
# views together, and paint each token's three coordinates as red, green and blue
# (`emlib.diagnostics.patch_pca_rgb`). Because the PCA is shared, a colour means the same direction
# in feature space in both pictures: if the two datasets occupy different regions of the feature
# space, they come out in different colours.

# %%
for name, bb in backbones.items():
    views = {k: backbone_view(v.images[0], v.masks[0], bb.patch_size,
                              settings)[0]
             for k, v in volumes.items()}
    rgb = token_pca(bb, views, settings)
    title = f"{name}: first three principal components of patch tokens"
    plot_patch_pca(rgb, images=views, title=title,
                   weights_label=settings.weights_label).show()
if not backbones:
    print("No backbone could be loaded (see the note above), so this page has "
          "no token pictures.")

# %% [markdown]
# ## Reading the pictures
#
# **With random weights** (the smoke profile) the pictures carry no learned structure. A randomly
# initialised ViT's tokens are random mixtures of each patch's pixels and random position codes, so
# the colours form a noise-like mosaic; at most they echo local brightness faintly. Membranes,
# mitochondria and background are not told apart, and the two datasets get no colours of their own.
# These figures only show that the pipeline runs; they say nothing about foundation models.
#
# **With pretrained weights** (run the chapter with `profile = "quick"`), the published DINOv2 pictures
# of natural images show tokens of the same object part taking the same colour across images, and
# background separating from foreground {cite:p}`oquab2023dinov2`. What to look for on EM is twofold:
# whether mitochondria, membranes and cytoplasm get distinct colours *within* a slice (what a light
# segmentation head needs), and whether Lucchi++ and VNC get different colours *overall* (a domain gap
# in feature space). The paper finds the second at the level of whole-slice embeddings (the mean of
# the patch tokens): in a PCA of frozen DINOv2-L/14 embeddings the two datasets do not overlap, a
# logistic-regression probe predicts the dataset with accuracy {glue:text}`paper_probe_accuracy` and
# AUROC {glue:text}`paper_probe_auroc`, and the Fréchet distance between the two sets in DINOv2
# feature space is {glue:text}`paper_fd_frozen`. LoRA adaptation brings the distance down to
# {glue:text}`paper_fd_lora`, yet the probe still separates them perfectly
# {cite:p}`fusterbarcelo2026foundational`.
# The diagnostics chapter measures this; this chapter only shows where those embeddings come from.
#
# ## Summary
#
# - A ViT sees a slice as an $(H/p) \times (W/p)$ grid of tokens; the authors' resize makes Lucchi++
#   756 x 1022 (54 x 73 tokens at $p = 14$) and VNC 1022 x 1022 (73 x 73 tokens).
# - Grey slices become three identical channels with ImageNet statistics, far from the photographs the
#   models were trained on.
# - The PCA-of-tokens picture, fitted jointly over both datasets, shows at a glance whether features
#   separate structures within a slice and whether they separate the datasets; random weights show
#   neither.
#
# ## Exercises
#
# :::{exercise} Tokens and memory at the paper's resolution
# :label: ex-sees-memory
#
# How many tokens does a VNC slice give a ViT-L/14 at the paper's resolution, and how much memory does
# its token map take in float32? How does that change for DINOv3 (patch 16)?
# :::
#
# :::{solution} ex-sees-memory
# :class: dropdown
#
# VNC 1024 x 1024 becomes 1022 x 1022, a 73 x 73 grid of 5329 tokens; with $C = 1024$ channels of
# 4 bytes that is 5329 x 1024 x 4 bytes, about 21.8 MB per slice. At patch 16 the slice becomes
# `protocol_size(1024, 1024, multiple=16)` = 1008 x 1008, a 63 x 63 grid of 3969 tokens, about 16.3 MB.
# Attention cost grows with the square of the token count, so the patch size matters even more there.
# :::
#
# :::{exercise} One PCA per dataset
# :label: ex-sees-separate-pca
#
# Fit the PCA separately for each dataset (one `patch_pca_rgb` call per view) and compare with the joint
# pictures above. Why does the book fit them jointly?
# :::
#
# :::{solution} ex-sees-separate-pca
# :class: dropdown
#
# ```python
# from emlib.data import normalize
# from emlib import extract_token_maps, patch_pca_rgb
#
# bb = backbones[settings.backbone]
# def tokens(im):
#     return extract_token_maps(
#         bb, im[None], normalise=lambda a: normalize(a, bb.mean, bb.std),
#         device=settings.device, progress=False)[0]
# views = {k: backbone_view(v.images[0], v.masks[0], bb.patch_size,
#                           settings)[0] for k, v in volumes.items()}
# separate = {k: patch_pca_rgb(tokens(im)) for k, im in views.items()}
# plot_patch_pca(separate, images=views, title="separate PCA per dataset",
#                weights_label=bb.weights_label)
# ```
#
# Each picture now uses its own three directions and its own colour scale, so both always span the full
# colour range and look equally "rich". Within a slice the structure is the same, but colours can no
# longer be compared across datasets: a domain gap, which the joint fit shows as two different colour
# palettes, becomes invisible.
# :::
#
# :::{exercise} Look at pretrained features
# :label: ex-sees-quick
#
# Run this chapter with `profile = "quick"` (on Colab with a GPU runtime, or anywhere with internet
# access). Describe the DINOv2 pictures: which structures share a colour, and do Lucchi++ and VNC share
# a palette? Compare with the smoke pictures.
# :::
#
# :::{solution} ex-sees-quick
# :class: dropdown
#
# There is no single right answer: this exercise asks you to look. Pretrained tokens vary smoothly over
# a structure, so expect membranes, mitochondria and cytoplasm to form coherent coloured regions,
# unlike the mosaic of the random-weight pictures. If the two datasets come out in clearly different
# palettes under the joint PCA, you are looking at the domain gap that the paper's latent diagnostics
# quantify. Write down what you see before reading the diagnostics chapter.
# :::
