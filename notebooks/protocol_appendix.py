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
# # Appendix: the authors' protocol, item by item
#
# The paper profile is meant to run what the authors' code runs. This page lists every item of
# their protocol that decides a result: the file of their code that decides it
# (`uhlmanngroup/MicroscopyFoundationHub`, "MFH" below, at the commit read), what that file does, what
# the profile of this page does, and whether the two match. The right-hand columns are read from the
# profile when the page is built (`emlib.protocol.protocol_table`), so they cannot drift from the code.

# %% tags=["parameters"]
profile = "smoke"               # smoke (CPU, random weights), quick (pretrained, Colab GPU) or paper
backbone: str | None = None     # None: the profile's backbone
data_dir: str | None = None     # None: $EMLIB_DATA if set, else download into the user cache
weights_dir: str | None = None  # None: $EMLIB_WEIGHTS if set, else the timm / open_clip hubs
device = "auto"                 # "auto": the GPU when there is one, else the CPU
seed: int | None = None         # None: the profile's seeds; an integer: only that seed
out_dir = "runs"

# %% [markdown]
# The cell above holds the page's parameters (papermill replaces them when the book is built); this
# page reads only the `paper` profile's settings, so none of them changes it.

# %%
from emlib import get_profile, protocol_table, show_table

table = protocol_table("paper")
print(get_profile("paper").summary())
show_table(table, ["item", "authors_setting", "ours", "match"], caption="The authors' protocol against the paper profile")

# %% [markdown]
# Where each item is decided in the authors' code, and, for the items that do not simply match, how
# to get the authors' value or what is missing:

# %%
show_table(table, ["item", "authors_file", "how"], caption="The authors' files, and what the match column needs")

# %% [markdown]
# `match` says `yes` where the profile does what the authors' file does; `selectable` where the
# authors' files disagree with each other or with the paper, the profile follows the paper and the
# other value is one option away (the `how` column names it); `no` where this project does not
# reproduce the item yet, or where the profile is not the paper's (the `smoke` and `quick` profiles
# are smaller on purpose); `unclear` where it is not known which version of the authors' code the
# paper ran. Counted:

# %%
table["match"].value_counts().rename_axis("match").reset_index(name="items")

# %% [markdown]
# Two items decide the paper's headline result and have chapters of their own: the paired training
# set (chapter 5b audits it) and paired scoring (every results table holds the `mixed` rows, the
# authors' number, beside the per-test-set rows; chapter 5 shows them).
#
# ## Exercises
#
# :::{exercise} Read the profiles
# :label: ex-protocol-profiles
#
# Which items does the `quick` profile change, and why is each change needed for a free Colab GPU?
# :::
#
# :::{solution} ex-protocol-profiles
# :class: dropdown
#
# ```python
# paper, quick = protocol_table("paper"), protocol_table("quick")
# changed = paper.ours != quick.ours
# paper.loc[changed, ["item", "ours"]].assign(quick=quick.loc[changed, "ours"])
# ```
#
# The smaller backbone, the crops and the shorter schedule make a run fit the time and memory of a
# free GPU; the items that define the experiment (pairing, scoring, IoU pooling) stay the same.
# :::
