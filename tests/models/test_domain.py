"""Feature-level remedies (emlib.models.domain): per-domain feature norm, FiLM, per-domain heads, CORAL probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from emlib.errors import ConfigError
from emlib.models.domain import (
    DOMAINS,
    CoralProbe,
    DomainAwareHead,
    DomainFeatureNorm,
    DomainFiLM,
    DomainSegmentationModel,
    domain_index,
    running_stat_names,
)
from emlib.train import fit, load_trained


def test_domain_ids_are_positions_in_domains() -> None:
    assert DOMAINS == ("lucchi_pp", "vnc")
    assert [domain_index(d) for d in DOMAINS] == [0, 1]
    with pytest.raises(ConfigError, match="dataset='paired' has no domain id"):
        domain_index("paired")


def test_domain_feature_norm_keeps_separate_statistics_per_domain() -> None:
    norm = DomainFeatureNorm(2, 3, momentum=1.0)
    x0 = torch.randn(4, 3, 5, 5) * 4 + 10
    out = norm(x0, 0)
    assert out.mean().abs() < 1e-5 and out.std() == pytest.approx(1.0, abs=0.05)
    assert torch.allclose(norm.running_mean[0], x0.mean((0, 2, 3)), atol=1e-4)
    assert torch.equal(norm.running_mean[1], torch.zeros(3)) and torch.equal(norm.running_var[1], torch.ones(3))
    assert norm.num_batches_tracked.tolist() == [1, 0]
    norm.eval()
    shifted = norm(x0[:1] + 1.0, 0)  # evaluation uses domain 0's running statistics
    assert shifted.mean() > 0.1
    unseen = norm(x0[:1] * 3 - 7, 1)  # a domain never trained on: its own statistics (AdaBN)
    assert unseen.mean().abs() < 1e-4
    norm.train()
    mixed = norm(torch.cat([x0[:2], -x0[:2]]), torch.tensor([0, 0, 1, 1]))
    assert mixed[:2].mean().abs() < 1e-4 and mixed[2:].mean().abs() < 1e-4


def test_film_is_per_domain() -> None:
    film = DomainFiLM(2, 3)
    x = torch.randn(3, 3, 2, 2)
    with torch.no_grad():
        film.gamma[1] = 2.0
        film.beta[1] = 1.0
    out = film(x, torch.tensor([0, 1, 0]))
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert torch.allclose(out[1], 2 * x[1] + 1)
    out.sum().backward()
    assert film.gamma.grad[0].abs().sum() > 0 and film.beta.grad[1].abs().sum() > 0


class _Const(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, features: torch.Tensor, out_size) -> torch.Tensor:
        return torch.full((features.shape[0], 2, *out_size), self.value)


def test_per_domain_heads_route_by_domain() -> None:
    head = DomainAwareHead([_Const(0.0), _Const(1.0)], num_domains=2, channels=4)
    logits = head(torch.randn(3, 4, 2, 2), (6, 6), torch.tensor([1, 0, 1]))
    assert logits.shape == (3, 2, 6, 6)
    assert logits[:, 0, 0, 0].tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ConfigError, match="domain ids must lie in 0..1"):
        head(torch.randn(1, 4, 2, 2), (6, 6), 2)


def test_domain_model_needs_a_domain_and_names_its_statistics() -> None:
    backbone = nn.Conv2d(3, 4, 2, stride=2)
    model = DomainSegmentationModel(backbone, DomainAwareHead([_Const(0.5)], num_domains=2, channels=4, feature_norm=True))
    assert model(torch.zeros(2, 3, 8, 8), domain=1).shape == (2, 2, 8, 8)
    with pytest.raises(ConfigError, match="domain=d"):
        model(torch.zeros(1, 3, 8, 8))
    names = running_stat_names(model)
    assert names and all(n.startswith("head.norm.") for n in names) and "head.norm.running_mean" in names
    assert running_stat_names(backbone) == set()


def test_coral_probe_sees_the_head_stem(tiny) -> None:
    from emlib.train import build_model

    model = build_model(tiny(train_set="paired", coral_weight=1.0, head="deconv")).model
    probe = CoralProbe(model)
    model.head(torch.randn(4, 384, 2, 2), (28, 28))
    assert probe.features.shape == (4, 8, 2, 2)  # head_channels of the stem
    assert probe.loss(torch.tensor([0, 0, 0, 0])).item() == 0.0  # one domain only: nothing to align
    assert probe.loss(torch.tensor([0, 0, 1, 1])).item() > 0
    probe.remove()


def test_feature_norm_run_saves_statistics_and_tests_with_the_test_domain(tiny, shared_data: Path, tmp_path: Path) -> None:
    from emlib.evaluation import evaluate

    cfg = tiny(train_set="paired", feature_norm=True, input_alignment="resample")
    trained = fit(cfg, tmp_path / "run", root=shared_data, progress=False)
    norm = trained.model.head.norm
    assert norm.num_batches_tracked.tolist()[0] > 0 and norm.num_batches_tracked.tolist()[1] > 0
    again = load_trained(tmp_path / "run")
    assert torch.equal(again.model.head.norm.running_mean, norm.running_mean)
    with pytest.raises(ConfigError, match="domain=d"):
        trained.model(torch.zeros(1, 3, 28, 28))
    res = evaluate(trained, "vnc", root=shared_data, keep_predictions=True)
    assert 0 <= res.scores["iou_fg"] <= 1 and res.predictions.shape == (1, 56, 56)
