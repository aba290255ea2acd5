"""Tests of emlib.chapters.backbones: backbone inputs, family backbones, missing weights as a note, token pictures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from emlib.config import DRY_RUN_LABEL, get_profile
from emlib.errors import ConfigError, WeightsError
from emlib.chapters import backbones as views
from emlib.chapters.settings import ChapterSettings, chapter_settings
from emlib.chapters.backbones import (
    LoadedBackbones,
    MissingWeightsNote,
    backbone_view,
    crop_around_foreground,
    family_backbones,
    load_backbones,
    token_pca,
)


def test_crop_around_foreground_finds_the_most_foreground() -> None:
    image = np.arange(100 * 120).reshape(100, 120)
    mask = np.zeros((100, 120), bool)
    mask[60:90, 80:110] = True
    crop, m = crop_around_foreground(image, mask, 32, stride=8)
    best = max(mask[t : t + 32, l : l + 32].sum() for t in range(0, 69, 8) for l in range(0, 89, 8))
    assert crop.shape == m.shape == (32, 32) and m.sum() == best
    top, left = divmod(int(crop[0, 0]), 120)
    assert (m == mask[top : top + 32, left : left + 32]).all()
    centre, none = crop_around_foreground(image, None, 20)
    assert divmod(int(centre[0, 0]), 120) == (40, 50) and not none.any()
    with pytest.raises(ConfigError, match="larger than the slice"):
        crop_around_foreground(image, mask, 101)


def test_backbone_view_crop_or_protocol_resize(smoke: ChapterSettings) -> None:
    image = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[10:40, 10:40] = True
    view, m = backbone_view(image, mask, 14, smoke)
    assert view.shape == (224, 224) and m[10:40, 10:40].all()
    quick = chapter_settings("quick", device="cpu")
    view, m = backbone_view(image, mask, 14, quick)
    assert view.shape == (378, 518) and m.shape == view.shape and m.dtype == bool


def test_family_backbones_one_per_family_from_the_profile() -> None:
    assert family_backbones(chapter_settings("smoke", device="cpu")) == [
        "dinov2_vits14", "dinov3_vits16", "openclip_vitb16"]
    assert family_backbones(chapter_settings("smoke", device="cpu", backbone="openclip_vitl14")) == [
        "dinov2_vits14", "dinov3_vits16", "openclip_vitl14"]
    assert family_backbones(chapter_settings("paper", device="cpu")) == list(get_profile("paper").family_backbones)
    assert family_backbones(chapter_settings("paper", device="cpu", backbone="dinov2_vits14")) == [
        "dinov2_vits14", "dinov3_vitl16", "openclip_vitl14"]


def test_random_backbones_repeat_and_token_pictures(smoke: ChapterSettings) -> None:
    first = load_backbones(["dinov2_vits14"], smoke)["dinov2_vits14"]
    again = load_backbones(["dinov2_vits14"], smoke)["dinov2_vits14"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    rng = np.random.default_rng(0)
    views = {"a": rng.integers(0, 256, (56, 56), dtype=np.uint8), "b": rng.integers(0, 256, (56, 70), dtype=np.uint8)}
    rgb = token_pca(first, views, smoke)
    assert rgb["a"].shape == (4, 4, 3) and rgb["b"].shape == (4, 5, 3)
    assert all(0 <= v.min() and v.max() <= 1 for v in rgb.values())


def _without_weights(monkeypatch: pytest.MonkeyPatch, missing: set[str]) -> None:
    """create_backbone raises WeightsError (as offline without a file) for the backbones in ``missing``: like the hub's,
    its message ends with the fix in Python words and its ``why`` is the sentence without it."""
    real = views.create_backbone

    def create(name: str, **kwargs: Any) -> Any:
        if name in missing:
            why = f"no weights file for {name} and the hub is offline"
            raise WeightsError(f"{why}; run emlib.fetch_weights(['{name}']) where there is internet", why=why)
        return real(name, **{**kwargs, "pretrained": False})

    monkeypatch.setattr(views, "create_backbone", create)


def test_some_backbones_missing_are_left_out_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = chapter_settings("quick", device="cpu")
    names = family_backbones(settings)
    _without_weights(monkeypatch, {"dinov3_vits16", "openclip_vitb16"})
    loaded = load_backbones(names, settings)
    assert list(loaded) == ["dinov2_vits14"] and len(loaded) == 1 and loaded["dinov2_vits14"].embed_dim == 384
    assert list(loaded.missing) == ["dinov3_vits16", "openclip_vitb16"]
    assert "hub is offline" in loaded.missing["dinov3_vits16"]
    page = loaded._repr_html_()
    assert page.index("emlib-missing-weights") < page.index("<table")  # the note, then the table
    for name in loaded.missing:
        assert f"<strong>{name}</strong>" in page and f"<code>emlib weights fetch {name}</code>" in page
    assert "weights_dir" in page and "this page shows dinov2_vits14 only" in page
    assert "fetch_weights" not in page  # the API's own fix is replaced by the reader's
    table = loaded.table()
    assert list(table.index) == ["dinov2_vits14"] and table.loc["dinov2_vits14", "family"] == "dinov2"
    assert "Left out for missing weights: dinov3_vits16, openclip_vitb16" in repr(loaded)


def test_all_backbones_missing_say_plainly_that_nothing_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = chapter_settings("quick", device="cpu")
    _without_weights(monkeypatch, set(family_backbones(settings)))
    loaded = load_backbones(family_backbones(settings), settings)
    assert not loaded and dict(loaded.items()) == {} and len(loaded.missing) == 3
    table = loaded.table()  # the chapter's table is empty, not a KeyError
    assert table.empty and table.index.name == "backbone" and "weights" in table.columns
    page = loaded._repr_html_()
    assert "no backbone could be loaded" in page and "nothing to show here" in page and "<table" not in page
    assert all(f"emlib weights fetch {name}" in page for name in family_backbones(settings))


def test_nothing_missing_means_no_note(smoke: ChapterSettings) -> None:
    loaded = load_backbones(["dinov2_vits14"], smoke)
    assert loaded.note() is None and "emlib-missing-weights" not in loaded._repr_html_()
    assert "emlib-badge" in loaded._repr_html_()  # random weights: the table carries the badge


def test_missing_weights_note_words() -> None:
    note = MissingWeightsNote({"dinov3_vits16": "gated <repo>.", "dinov2_vits14": "offline"}, loaded=())  # errors' `why`
    text = note.text()
    assert text.splitlines()[0].startswith("Left out for missing weights: dinov3_vits16, dinov2_vits14 (no backbone")
    assert "gated <repo>; to add it, run `emlib weights fetch dinov3_vits16` where there is internet (first accept" in text
    assert "fetch_weights" not in text  # the API's own fix is replaced by the reader's
    assert "- dinov2_vits14: offline; to add it, run `emlib weights fetch dinov2_vits14` where there is internet, or" in text
    assert "-p weights_dir=FOLDER" in text and "gated &lt;repo&gt;" in note._repr_html_()


def test_dry_run_settings_put_the_badge_on_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = chapter_settings("quick-dry", device="cpu")
    assert settings.weights_label == DRY_RUN_LABEL and settings.dry_run
    _without_weights(monkeypatch, set())
    loaded = load_backbones(["dinov2_vits14"], settings)
    assert isinstance(loaded, LoadedBackbones) and DRY_RUN_LABEL in loaded._repr_html_()
