"""The sentences a chapter glues follow the config and the run they describe (emlib.chapters.prose)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from emlib.chapters.prose import (backbone_passes, cache_sentence, fd_interval_sentence, head_sentence,
                                  prediction_sentence)
from emlib.config import RunConfig, get_profile
from emlib.diagnostics.report import domain_report
from emlib.train import epoch_order

ROOT = Path(__file__).resolve().parents[2]


def test_head_sentence_follows_the_configured_head() -> None:
    linear = head_sentence(RunConfig(head="linear"), embed_dim=384)
    deconv = head_sentence(RunConfig(head="deconv", head_channels=96), embed_dim=384)
    assert linear != deconv
    assert linear.startswith("This page's head is the linear head") and "LinearHead" in linear
    assert deconv.startswith("This page's head is SegHeadDeconv") and "96 channels" in deconv
    assert "LinearHead" not in deconv and "96" not in linear
    assert "384-number tokens" in linear and "384-number tokens" in deconv
    # the profiles: smoke trains the linear head, quick and paper the authors' head at their widths
    assert "linear head" in head_sentence(get_profile("smoke").base, embed_dim=384)
    for name in ("quick", "paper"):
        base = get_profile(name).base
        assert f"{base.head_channels} channels" in head_sentence(base, embed_dim=1024)


def test_backbone_passes_count_the_items_no_earlier_epoch_drew() -> None:
    every = RunConfig(epochs=4, samples_per_epoch=None, augment=False)
    assert backbone_passes(every, 7) == [7, 0, 0, 0]
    some = RunConfig(epochs=5, samples_per_epoch=3, augment=False)
    passes = backbone_passes(some, 10)
    drawn = set().union(*({int(i) for i in epoch_order(some, 10, e)} for e in range(5)))
    assert passes[0] == 3 and sum(passes) == len(drawn) and all(0 <= p <= 3 for p in passes)
    assert backbone_passes(some.replace(cache="none"), 10) == [3] * 5
    assert backbone_passes(RunConfig(regime="lora", epochs=2, samples_per_epoch=3, augment=False), 10) == [3, 3]


def test_epoch_order_is_seeded_and_sized_by_the_config() -> None:
    cfg = RunConfig(samples_per_epoch=4, augment=False, seed=3)
    assert np.array_equal(epoch_order(cfg, 20, 1), epoch_order(cfg, 20, 1))
    assert not np.array_equal(epoch_order(cfg, 20, 0), epoch_order(cfg, 20, 1))
    assert len(epoch_order(cfg, 20, 0)) == 4 and len(epoch_order(cfg, 3, 0)) == 3
    assert len(epoch_order(cfg.replace(augment=True, cache="none"), 20, 0)) == 20


def test_cache_sentence_says_what_the_first_and_later_epochs_do() -> None:
    whole = cache_sentence(RunConfig(epochs=3, samples_per_epoch=None, augment=False), 5)
    assert "first epoch only" in whole and "all 5 training tiles" in whole
    slices = cache_sentence(RunConfig(epochs=3, crop=None, long_edge=112, samples_per_epoch=None), 5)
    assert "5 training slices" in slices
    smoke = get_profile("smoke").base
    drawn = cache_sentence(smoke, 1000)
    assert "first epoch only" not in drawn and f"draws {smoke.samples_per_epoch} of the 1000" in drawn
    assert ", ".join(map(str, backbone_passes(smoke, 1000))) in drawn and "saves little" in drawn
    assert "should be faster" in cache_sentence(RunConfig(epochs=8, samples_per_epoch=8, augment=False), 10)
    assert "no feature store" in cache_sentence(smoke.replace(regime="lora"), 1000)
    # the tiles an earlier run stored are not computed again: the sentence says so, and points at the measured column
    assert all("earlier run of this backbone stored" in s and "backbone passes column" in s for s in (whole, slices, drawn))


def _result(pred: np.ndarray, mask: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(predictions=pred, masks=mask)


def test_prediction_sentence_describes_constant_and_structured_predictions() -> None:
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :1] = True  # a quarter of the pixels
    structured = mask.copy()
    structured[:, 1] = True  # half of them
    both_constant = prediction_sentence({"lucchi_pp": _result(np.zeros_like(mask), mask),
                                         "vnc": _result(np.ones_like(mask), mask)}, pretrained=False)
    assert "one class everywhere (background)" in both_constant and "one class everywhere (mitochondria)" in both_constant
    assert "not constant" not in both_constant
    mixed = prediction_sentence({"lucchi_pp": _result(structured, mask)}, pretrained=False)
    assert mixed.startswith("The predictions are not constant") and "50%" in mixed and "25%" in mixed
    assert "one class everywhere" not in mixed and "random weights" in mixed
    assert "random weights" not in prediction_sentence({"vnc": _result(structured, mask)}, pretrained=True)


def _report(**options: object) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    emb = {"a": rng.normal(size=(8, 3)), "b": rng.normal(1.0, size=(8, 3))}
    return domain_report(emb, backbone="test", adapter="frozen", weights_label="random weights", n_boot=20,
                         n_permutations=0, n_splits=2, probe_components=None, **options)


def test_fd_interval_sentence_names_the_method_the_report_used() -> None:
    subsample = fd_interval_sentence(_report(), n_boot=20)
    assert "half-sample subsampling" in subsample and "without replacement" in subsample
    assert " with replacement" not in subsample and "20 replicates" in subsample
    percentile = fd_interval_sentence(_report(fd_interval="percentile"), n_boot=20)
    assert "percentile bootstrap" in percentile and " with replacement" in percentile
    assert fd_interval_sentence(_report(fd_interval=None), n_boot=20).startswith("No interval")


#: Remedy papers chapter 8 cites, and the keys references.bib must hold for them.
REMEDY_KEYS = ("li2018adabn", "perez2018film", "sun2016deepcoral", "sun2016return", "zuiderveld1994clahe",
               "pizer1987adaptive")


def test_remedy_papers_are_in_the_bibliography_and_cited() -> None:
    bib = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M))
    assert set(REMEDY_KEYS) <= keys
    chapter = (ROOT / "notebooks" / "08_beyond_the_paper.py").read_text(encoding="utf-8")
    cited = {k.strip() for group in re.findall(r"\{cite:p\}`([^`]+)`", chapter) for k in group.split(",")}
    assert set(REMEDY_KEYS) <= cited
    assert "Li et al., 2016" not in chapter and "Zuiderveld 1994" not in chapter


@pytest.mark.parametrize("stem, name", [("03_frozen_backbone", "head"), ("03_frozen_backbone", "cache"),
                                        ("03_frozen_backbone", "predictions"),
                                        ("06_latent_diagnostics", "fd_interval_method")])
def test_chapters_glue_the_sentences_they_quote(stem: str, name: str) -> None:
    text = (ROOT / "notebooks" / f"{stem}.py").read_text(encoding="utf-8")
    assert f"{{glue:text}}`{name}`" in text and f"glue_facts({name}=" in text


def test_sentences_are_plain_text_for_glue() -> None:
    """``{glue:text}`` inserts text, not Markdown: a backtick would show as a backtick."""
    smoke = get_profile("smoke").base
    mask = np.zeros((1, 4, 4), bool)
    sentences = [head_sentence(smoke, embed_dim=384), head_sentence(get_profile("paper").base, embed_dim=1024),
                 cache_sentence(smoke, 1000), cache_sentence(RunConfig(samples_per_epoch=None, augment=False), 5),
                 prediction_sentence({"vnc": _result(mask, mask)}, pretrained=False),
                 fd_interval_sentence(_report(), n_boot=20)]
    assert all("`" not in s and '"' not in s for s in sentences)
