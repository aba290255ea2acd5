"""Plug-in points of fit/evaluate (emlib.plugins): which plug-ins a config names, what each hook does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emlib.config import RunConfig
from emlib.data.alignment import align_run_volume
from emlib.losses import domain_weighted_loss, foreground_weights
from emlib.models.domain import DomainAwareHead, DomainSegmentationModel
from emlib.plugins import (
    PLUGINS,
    Coral,
    DomainAware,
    ForegroundReweighting,
    InputAlignment,
    Plugin,
    cache_parts,
    forward_kwargs,
    plugins_for,
    training_foreground_fractions,
    transform_volume,
)
from emlib.train import fit


def test_paper_configs_have_no_plugins() -> None:
    assert plugins_for(RunConfig()) == []
    assert plugins_for(RunConfig(train_set="paired", balance=True)) == []  # balanced sampling is the dataset's, no plug-in
    assert list(PLUGINS) == ["input_alignment", "domain_aware", "fg_reweight", "coral"]


def test_plugins_for_picks_the_named_plugins_in_order() -> None:
    everything = RunConfig(train_set="paired", input_alignment="histmatch", film=True, fg_reweight=True, coral_weight=0.5)
    assert [type(p) for p in plugins_for(everything)] == [InputAlignment, DomainAware, ForegroundReweighting, Coral]
    assert [type(p) for p in plugins_for(RunConfig(train_set="paired", coral_weight=1.0, fg_reweight=True))] == [
        ForegroundReweighting, Coral,
    ]
    for option in ({"feature_norm": True}, {"film": True}, {"heads_per_domain": True}):
        assert [type(p) for p in plugins_for(RunConfig(train_set="paired", **option))] == [DomainAware]
    (only,) = plugins_for(RunConfig(input_alignment="clahe"), root="/somewhere")
    assert isinstance(only, InputAlignment) and only.root == "/somewhere"


def test_base_plugin_hooks_do_nothing() -> None:
    p = Plugin()
    images = np.zeros((1, 4, 4), np.uint8)
    same, masks = p.transform_volume("vnc", images, None)
    assert same is images and masks is None
    assert p.cache_parts() == {} and p.forward_kwargs(0) == {}
    assert p.build_model(nn.Identity(), nn.Identity) is None
    assert p.loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), "dice") is None and p.extra_loss(torch.zeros(1)) is None


def test_domain_aware_plugin_builds_a_domain_segmentation_model(tiny) -> None:
    from emlib.train import build_model

    model = build_model(tiny(train_set="paired", heads_per_domain=True, feature_norm=True)).model
    assert isinstance(model, DomainSegmentationModel) and isinstance(model.head, DomainAwareHead)
    assert len(model.head.heads) == 2 and model.head.norm is not None and model.head.film is None
    plain = build_model(tiny(train_set="paired")).model
    assert not isinstance(plain, DomainSegmentationModel)
    backbone = nn.Conv2d(3, 6, 2, stride=2)
    backbone.embed_dim = 6
    built = DomainAware(RunConfig(train_set="paired", film=True)).build_model(backbone, lambda: nn.Identity())
    assert isinstance(built, DomainSegmentationModel) and built.backbone is backbone
    assert len(built.head.heads) == 1 and built.head.film is not None and built.head.in_ch == 6


def test_forward_kwargs_and_cache_parts_merge() -> None:
    class Extra(Plugin):
        def forward_kwargs(self, domain):
            return {"scale": 2}

        def cache_parts(self):
            return {"extra": True}

    cfg = RunConfig(train_set="paired", film=True, input_alignment="standardise")
    plugins = plugins_for(cfg) + [Extra()]
    d = torch.tensor([0, 1])
    kwargs = forward_kwargs(plugins, d)
    assert set(kwargs) == {"domain", "scale"} and kwargs["domain"] is d and kwargs["scale"] == 2
    assert forward_kwargs([], 1) == {}
    assert cache_parts(plugins) == {"input_alignment": "standardise", "reference": "lucchi_pp", "extra": True}
    assert cache_parts([]) == {}


def test_transform_volume_applies_the_plugins_in_order() -> None:
    class Add(Plugin):
        def __init__(self, value: int) -> None:
            self.value = value

        def transform_volume(self, dataset, images, masks):
            return images + self.value, masks

    class Double(Plugin):
        def transform_volume(self, dataset, images, masks):
            return images * 2, None if masks is None else ~masks

    images, masks = np.ones((1, 2, 2), np.int64), np.zeros((1, 2, 2), bool)
    out, out_masks = transform_volume([Add(1), Double()], "vnc", images, masks)
    assert (out == 4).all() and out_masks.all()
    out, _ = transform_volume([Double(), Add(1)], "vnc", images, None)
    assert (out == 3).all()
    same, same_masks = transform_volume([], "vnc", images, masks)
    assert same is images and same_masks is masks


def test_input_alignment_plugin_is_align_run_volume(tiny, shared_data: Path) -> None:
    cfg = tiny(input_alignment="histmatch", alignment_reference="vnc")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32), dtype=np.uint8)
    (plugin,) = plugins_for(cfg, shared_data)
    out, masks = plugin.transform_volume("lucchi_pp", images, None)
    expected, _ = align_run_volume(cfg, "lucchi_pp", images, None, shared_data)
    assert masks is None and np.array_equal(out, expected) and not np.array_equal(out, images)


def test_foreground_reweighting_loss_is_domain_weighted_loss(tiny, shared_data: Path) -> None:
    cfg = tiny(train_set="paired", fg_reweight=True)
    (plugin,) = plugins_for(cfg, shared_data)
    plugin.attach(nn.Identity())
    fractions = training_foreground_fractions(cfg, shared_data)
    assert len(fractions) == 2 and all(0 < f < 1 for f in fractions)
    np.testing.assert_allclose(plugin.weights, foreground_weights(fractions))
    torch.manual_seed(0)
    logits, target, d = torch.randn(4, 2, 8, 8), (torch.rand(4, 8, 8) > 0.7).long(), torch.tensor([0, 1, 1, 0])
    for kind in ("dice", "ce"):
        assert torch.equal(plugin.loss(logits, target, d, kind), domain_weighted_loss(logits, target, d, plugin.weights, kind))
    assert plugin.extra_loss(d) is None


def test_coral_plugin_adds_the_weighted_probe_loss(tiny) -> None:
    from emlib.train import build_model

    cfg = tiny(train_set="paired", coral_weight=2.0)
    model = build_model(cfg).model
    (plugin,) = plugins_for(cfg)
    plugin.attach(model)
    model.head(torch.randn(4, 384, 2, 2), (28, 28))
    d = torch.tensor([0, 0, 1, 1])
    assert plugin.extra_loss(d).item() == pytest.approx(2.0 * plugin.probe.loss(d).item())
    assert plugin.loss(torch.zeros(1), torch.zeros(1), d, "dice") is None
    plugin.detach()
    plugin.probe.features = None
    model.head(torch.randn(4, 384, 2, 2), (28, 28))
    assert plugin.probe.features is None  # the hook is gone


@pytest.mark.parametrize(
    "option",
    [
        {"input_alignment": "standardise"},
        {"input_alignment": "histmatch", "alignment_reference": "vnc"},
        {"input_alignment": "clahe"},
        {"input_alignment": "resample"},
        {"film": True},
        {"coral_weight": 1.0},
        {"heads_per_domain": True, "regime": "lora"},
        {"fg_reweight": True},
        {"balance": True},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_tiny_paired_fit_per_option(tiny, shared_data: Path, option: dict) -> None:
    if option.get("input_alignment") == "clahe":
        pytest.importorskip("skimage")
    trained = fit(tiny(train_set="paired", **option), root=shared_data, progress=False)
    assert len(trained.history) == 2 and np.isfinite(trained.history["loss"]).all()
    if option.get("heads_per_domain"):
        heads = trained.model.head.heads
        assert len(heads) == 2 and not torch.equal(heads[0].classifier.weight, heads[1].classifier.weight)
