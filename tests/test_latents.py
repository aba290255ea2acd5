"""Embedding extraction over both datasets: shapes, disk cache, LoRA adapters, report table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emlib.errors import DataError
from emlib.latents import dataset_embeddings, latent_report, load_backbone_for_latents
from emlib.train import fit

from .test_train import tiny


@pytest.fixture(scope="module")
def frozen():
    return load_backbone_for_latents("dinov2_vits14", pretrained=False)


def test_embeddings_shapes_and_cache(shared_data: Path, tmp_path: Path, frozen, monkeypatch) -> None:
    backbone, adapter = frozen
    assert adapter == "frozen"
    emb = dataset_embeddings(backbone, root=shared_data, slices=3, long_edge=56, cache_dir=tmp_path, progress=False)
    assert {k: v.shape for k, v in emb.embeddings.items()} == {"lucchi_pp": (3, 384), "vnc": (3, 384)}
    assert emb.slice_ids["lucchi_pp"] == ("mask0000", "mask0082", "mask0164")
    assert len(list(tmp_path.glob("emb-*.npz"))) == 2
    import emlib.latents as latents

    monkeypatch.setattr(latents, "extract_embeddings", lambda *a, **k: pytest.fail("cache missed"))
    again = dataset_embeddings(backbone, root=shared_data, slices=3, long_edge=56, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.embeddings["vnc"], emb.embeddings["vnc"])
    x, labels, hover = emb.stacked()
    assert x.shape == (6, 384) and list(labels).count("vnc") == 3 and hover[0] == "lucchi_pp:mask0000"


def test_lora_adapter_changes_embeddings_and_report(shared_data: Path, tmp_path: Path, frozen) -> None:
    fit(tiny(regime="lora", epochs=1), tmp_path / "lora", root=shared_data, progress=False)
    tuned, label = load_backbone_for_latents("dinov2_vits14", pretrained=False, adapter_run=tmp_path / "lora")
    assert label == "LoRA (lora)"
    kwargs = dict(root=shared_data, slices=5, long_edge=56, progress=False)
    a = dataset_embeddings(frozen[0], **kwargs)
    b = dataset_embeddings(tuned, adapter=label, **kwargs)
    assert not np.allclose(a.embeddings["lucchi_pp"], b.embeddings["lucchi_pp"])
    table = latent_report([a, b], run_dir=tmp_path / "report", n_boot=10)
    assert list(table.adapter) == ["frozen", "LoRA (lora)"]
    assert set(table.weights_label) == {"random weights"}
    assert (table.fd > 0).all() and table.probe_auroc.between(0, 1).all()
    assert (tmp_path / "report" / "domain_report.csv").is_file()


def test_missing_adapter_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no LoRA adapter in .*train a run with regime='lora' first"):
        load_backbone_for_latents("dinov2_vits14", pretrained=False, adapter_run=tmp_path)
