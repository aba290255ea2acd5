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
# # LoRA: adapting the backbone a little
#
# A frozen backbone sees EM slices through features learned on natural photographs. The paper's second
# regime lets the backbone adapt, cheaply, with {term}`LoRA` (low-rank adaptation, {cite:t}`hu2021lora`): every
# chosen weight matrix $W$ of the ViT stays frozen, and a trainable low-rank update is added next to it,
#
# $$ W x \;\longrightarrow\; W x + \frac{\alpha}{r}\, B A x, \qquad A \in \mathbb{R}^{r \times d_\text{in}},\;
#    B \in \mathbb{R}^{d_\text{out} \times r}, $$
#
# with rank $r$ much smaller than the matrix sides. $B$ starts at zero, so training starts from the
# frozen model. The paper reports that LoRA improves in-domain IoU_fg over the frozen backbone when
# training on one dataset {cite:p}`fusterbarcelo2026foundational`. This chapter shows what LoRA adds,
# trains the LoRA runs and computes the gain from the results table. This page was built with the
# {glue:text}`profile` profile ({glue:text}`weights`; each run trains for {glue:text}`training`); with
# random weights the numbers only show that the pipeline runs.

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

from emlib import (build_model, chapter_command, chapter_configs, chapter_runs, chapter_settings,
                   compare_with_paper, count_parameters, ensure_data, get_profile, glue_facts, page_facts,
                   plot_grouped_bars, scored_rows, show_table)

settings = chapter_settings(profile, backbone=backbone, data_dir=data_dir, weights_dir=weights_dir,
                            device=device, seed=seed, out_dir=out_dir)
paths = ensure_data(settings)
facts = glue_facts(page_facts(settings))  # the numbers the text quotes, from the profile
settings

# %% [markdown]
# ## Where the adapters go
#
# `RunConfig.lora` holds the LoRA settings. The authors use rank 16, $\alpha = 32$ (a scale of 2), no
# dropout, on two linear maps of every transformer block: `attn.qkv` (the map that makes queries, keys
# and values) and `attn.proj` (the attention output). The MLP layers stay untouched.

# %%
configs = chapter_configs(settings, regimes=("frozen", "lora"), train_sets=("lucchi_pp",))
frozen_cfg, lora_cfg = sorted(configs, key=lambda c: c.regime)
pd.DataFrame({"this profile": vars(lora_cfg.lora), "paper": vars(get_profile("paper").base.lora)})

# %% [markdown]
# ## What trains
#
# Both models have the same backbone and head; LoRA adds the $A$, $B$ matrices and makes them trainable.
# `count_parameters` counts trainable and total parameters of each whole model:

# %%
rows = {}
for cfg in (frozen_cfg, lora_cfg):
    built = build_model(cfg)
    rows[cfg.regime] = {**count_parameters(built.model),
                        "LoRA matrices": count_parameters(built.model.backbone)["trainable"]}
params = pd.DataFrame(rows).T
params["trainable share"] = params["trainable"] / params["total"]
show_table(params, index=True, formats={"trainable": "{:,}", "total": "{:,}", "LoRA matrices": "{:,}",
                                        "trainable share": "{:.2%}"},
           caption=f"Parameters of the frozen and the LoRA model ({lora_cfg.backbone}): trainable and total")

# %% [markdown]
# A ViT block with token size $d$ has `qkv` ($d \to 3d$) and `proj` ($d \to d$), so rank $r$ adds
# $r(d + 3d) + r(d + d) = 6rd$ parameters per block; the exercise checks the count above with it.
# Even so, LoRA trains only a few percent of the model. The price is elsewhere: the tokens now change
# with every step, so they cannot be cached as in the frozen regime, and every epoch runs the
# backbone forward and backward.
#
# ## Training frozen and LoRA models on each dataset
#
# The frozen runs of the previous chapter are reused from the grid folder; the LoRA runs are trained
# now (or read back if an earlier build made them).

# %%
results = scored_rows(chapter_runs(settings, regimes=("frozen", "lora"), train_sets=("lucchi_pp", "vnc")))
print("the same runs from a shell:", chapter_command(settings, regimes=("frozen", "lora"), train_sets=("lucchi_pp", "vnc")))
show_table(results, ["train_set", "regime", "test_set", "in_domain", "iou_fg", "trainable_params", "train_seconds"],
           caption="Frozen and LoRA runs, each model on both test sets", formats={"train_seconds": "{:.1f}"})

# %% [markdown]
# ## The in-domain gain, computed
#
# The paper's claim concerns the in-domain cells (train and test on the same dataset). The gain is
# LoRA minus frozen, per training set, from the table above:

# %%
plot_grouped_bars(results, x="test_set", y="iou_fg", color="regime", facet="train_set", y_range=(0, 1),
                  title="Foreground IoU by training set (panels) and test set", weights_label=settings.weights_label)

# %% [markdown]
# The same numbers as a table, in-domain cells only, with the gain:

# %%
in_domain = results[results["in_domain"]].pivot_table(index="train_set", columns="regime", values="iou_fg")
in_domain["gain (LoRA - frozen)"] = in_domain["lora"] - in_domain["frozen"]
show_table(in_domain, index=True, caption="In-domain IoU_fg per training set: frozen, LoRA and the gain",
           weights_label=settings.weights_label)

# %% [markdown]
# `emlib.paper.compare_with_paper` turns this into a verdict on the paper's qualitative claim, with the
# weights that produced it. On the smoke profile the verdict is about random weights and says nothing
# about the paper; run the chapter with `profile="quick"` for a real check.

# %%
check = compare_with_paper(results, None, profile=settings.profile.name)
show_table(check[check["claim_id"] == "lora_beats_frozen"], ["claim", "book_value", "holds", "detail"],
           caption="The paper's claim, checked on this build's runs")

# %% [markdown]
# ## The cross-dataset test
#
# Adapting the backbone to one dataset could help or hurt on the other. Rows are (regime, training set),
# columns the test set; the off-diagonal cells are the cross-dataset test:

# %%
show_table(results.pivot_table(index=["regime", "train_set"], columns="test_set", values="iou_fg").reset_index(),
           caption="IoU_fg: (regime, training set) x test set", weights_label=settings.weights_label)

# %% [markdown]
# With random weights these cells mostly reflect which class the head ends up predicting everywhere,
# not anything the adapter learned. The next chapter asks what happens when one model is trained on
# both datasets at once.
#
# ## Summary
#
# - LoRA adds a trainable low-rank update $\frac{\alpha}{r} BA$ to `attn.qkv` and `attn.proj` of every
#   block; the original weights stay frozen.
# - It trains a few percent of the parameters, but the tokens change during training, so no feature cache.
# - The in-domain gain over the frozen backbone is computed from the results table, never assumed.
#
# ## Exercises
#
# :::{exercise} Count the LoRA parameters
# :label: ex-lora-count
#
# Check the "LoRA matrices" count of the table with the formula $6rd$ per block. The backbone module
# is `model.backbone`; its timm ViT is `model.backbone.model`, whose `blocks` are the transformer blocks.
# :::
#
# :::{solution} ex-lora-count
# :class: dropdown
#
# ```python
# model = build_model(lora_cfg).model
# d, r = model.backbone.embed_dim, lora_cfg.lora.rank
# len(model.backbone.model.blocks) * 6 * r * d, count_parameters(model.backbone)["trainable"]
# ```
#
# For ViT-S/14 ($d = 384$, 12 blocks) and $r = 16$ this is $12 \cdot 6 \cdot 16 \cdot 384 = 442{,}368$,
# equal to the count. For ViT-L/14 ($d = 1024$, 24 blocks) it is about 2.4 million, still a small
# fraction of its roughly 300 million parameters.
# :::
#
# :::{exercise} A lower LoRA rank
# :label: ex-lora-rank
#
# Train a LoRA run with rank 4 instead of 16 (same scale $\alpha / r = 2$) on Lucchi++ and compare its
# trainable parameters and in-domain IoU_fg with the rank-16 run.
# :::
#
# :::{solution} ex-lora-rank
# :class: dropdown
#
# ```python
# from dataclasses import replace
# from emlib import grid_dir, run_one
#
# small = lora_cfg.replace(lora=replace(lora_cfg.lora, rank=4, alpha=8))
# run_one(small, grid_dir(settings), root=settings.data_dir, profile=settings.profile.name, progress=False)
# ```
#
# Rank 4 has a quarter of the LoRA parameters. Whether it loses IoU is an empirical question: with
# pretrained weights a low rank is often enough for one dataset; on the smoke profile the comparison
# means nothing (random weights).
# :::
