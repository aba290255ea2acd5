"""Embedding extraction over both datasets: shapes, disk cache, LoRA adapters, report table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emlib.errors import ConfigError, DataError
from emlib.latents import IMAGE_SETS, dataset_embeddings, image_set_split, latent_report, load_backbone_for_latents
from emlib.train import fit


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


def test_lora_adapter_changes_embeddings_and_report(tiny, shared_data: Path, tmp_path: Path, frozen) -> None:
    fit(tiny(regime="lora", epochs=1), tmp_path / "lora", root=shared_data, progress=False)
    tuned, label = load_backbone_for_latents("dinov2_vits14", pretrained=False, adapter_run=tmp_path / "lora")
    assert label == "LoRA (lora)"
    # random init is seeded like training: the adapter sits on the frozen backbone's weights
    base = tuned.state_dict()["model.blocks.0.attn.qkv.base_layer.weight"]
    assert np.array_equal(base.numpy(), frozen[0].state_dict()["model.blocks.0.attn.qkv.weight"].numpy())
    kwargs = dict(root=shared_data, slices=5, long_edge=56, progress=False)
    a = dataset_embeddings(frozen[0], **kwargs)
    b = dataset_embeddings(tuned, adapter=label, **kwargs)
    # one tiny epoch moves the LoRA matrices (B starts at zero) only a little: the change is small but real
    assert any(v.abs().sum() > 0 for k, v in tuned.state_dict().items() if "lora_B" in k)
    assert not np.array_equal(a.embeddings["lucchi_pp"], b.embeddings["lucchi_pp"])
    table = latent_report([a, b], run_dir=tmp_path / "report", n_boot=10)
    assert list(table.adapter) == ["frozen", "LoRA (lora)"]
    assert set(table.weights_label) == {"random weights"}
    assert (table.fd > 0).all() and table.probe_auroc.between(0, 1).all()
    assert (table.fd_low <= table.fd).all() and (table.fd <= table.fd_high).all()  # half-sample interval, about fd
    assert set(table.fd_interval) == {"95% half-sample subsampling (normal, FD at these sample sizes)"}
    assert set(table.slices) == {"lucchi_pp test: 5 slices; vnc all: 5 slices (long side 56)"}
    assert (tmp_path / "report" / "domain_report.csv").is_file() and set(table.image_set) == {"book"}


def test_the_authors_image_sets_embed_the_three_vnc_test_slices(shared_data: Path, tmp_path: Path, frozen) -> None:
    """image_set='authors': the VNC slices of the authors' composed test folder; FD without an interval (issue 19)."""
    sets = dataset_embeddings(frozen[0], root=shared_data, vnc_split=image_set_split("authors"), slices=4, long_edge=56,
                              progress=False)
    assert sets.slice_ids["vnc"] == ("00", "03", "08") and len(sets.slice_ids["lucchi_pp"]) == 4
    table = latent_report([sets], run_dir=tmp_path, n_boot=10, image_set="authors")
    row = table.iloc[0]
    assert (row.n_b, row.image_set, row.fd_interval) == (3, "authors", "none") and row.fd > 0
    assert np.isnan(row.fd_low) and np.isnan(row.fd_high)  # 3 slices: no half-sample interval
    assert row.protocol_test_a + row.protocol_test_b == 2  # 20 % of 7 slices, both datasets in the test part
    assert (tmp_path / "domain_report_authors.csv").is_file() and not (tmp_path / "domain_report.csv").exists()
    assert IMAGE_SETS == {"book": "all", "authors": "test"}
    with pytest.raises(ConfigError, match=r"image_set='paper' is not known; pass one of \['book', 'authors'\]"):
        latent_report([sets], image_set="paper")


def test_missing_adapter_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no LoRA adapter in .*train a run with regime='lora' first"):
        load_backbone_for_latents("dinov2_vits14", pretrained=False, adapter_run=tmp_path)


def test_token_separability_table(shared_data: Path, tmp_path: Path, frozen) -> None:
    from emlib.latents import token_separability_table

    table = token_separability_table({"frozen": frozen[0]}, root=shared_data, slices=2, long_edge=224, n_splits=3,
                                     run_dir=tmp_path)
    assert list(table.dataset) == ["Lucchi++", "VNC"] and set(table.adapter) == {"frozen"}
    for col in ("auroc", "auroc_std", "fisher_ratio", "transfer_auroc", "fg_fraction", "n_fg", "n_bg", "weights_label"):
        assert col in table.columns
    assert table.auroc.between(0, 1).all() and table.transfer_auroc.between(0, 1).all()
    assert (table.n_fg > 0).all() and (table.n_bg > table.n_fg).all() and set(table.weights_label) == {"random weights"}
    assert list(table.grid) == ["12x16", "16x16"] and (table.slices == 2).all()
    assert (tmp_path / "token_separability.csv").is_file()


def test_transfer_auroc_follows_the_foreground_direction() -> None:
    from emlib.latents import transfer_auroc

    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.3
    a = rng.normal(size=(400, 8)); a[:, 0] += 4 * y          # foreground along axis 0
    b = rng.normal(size=(400, 8)); b[:, 1] += 4 * y          # foreground along axis 1
    assert transfer_auroc(a, y, a, y) > 0.99                  # separable within: AUROC ~ 1
    assert abs(transfer_auroc(a, y, b, y) - 0.5) < 0.15       # another direction: near chance
    assert np.isnan(transfer_auroc(a, np.zeros(400, bool), b, y))


def test_dataset_tokens_labels_follow_the_mask(shared_data: Path, frozen) -> None:
    from emlib.data import load_volume
    from emlib.latents import dataset_tokens

    x, y, grid = dataset_tokens(frozen[0], "vnc", "all", root=shared_data, slices=1, long_edge=None)
    assert grid == (73, 73) and x.shape == (73 * 73, 384) and y.dtype == bool
    mask = load_volume("vnc", "all", root=shared_data, slices=[0]).masks[0, :1022, :1022]
    assert abs(y.mean() - mask.reshape(73, 14, 73, 14).mean(axis=(1, 3)).__ge__(0.5).mean()) < 1e-9


def test_cache_key_tells_random_initialisations_apart(shared_data: Path, tmp_path: Path) -> None:
    from emlib.latents import weights_fingerprint

    a, _ = load_backbone_for_latents("dinov2_vits14", pretrained=False, seed=0)
    b, _ = load_backbone_for_latents("dinov2_vits14", pretrained=False, seed=1)
    a2, _ = load_backbone_for_latents("dinov2_vits14", pretrained=False, seed=0)
    assert weights_fingerprint(a) == weights_fingerprint(a2) != weights_fingerprint(b)
    kwargs = dict(root=shared_data, slices=2, long_edge=56, cache_dir=tmp_path, progress=False)
    ea, eb = dataset_embeddings(a, **kwargs), dataset_embeddings(b, **kwargs)
    assert len(list(tmp_path.glob("emb-*.npz"))) == 4
    assert not np.allclose(ea.embeddings["vnc"], eb.embeddings["vnc"])
    with pytest.raises(ConfigError, match="transform_key"):
        dataset_embeddings(a, transform=lambda name, x: x, **kwargs)


def test_meta_interpolation_reaches_embeddings_and_cache_key(shared_data: Path, tmp_path: Path, frozen) -> None:
    meta, adapter = load_backbone_for_latents("dinov2_vits14", pretrained=False, pos_interpolation="meta")
    assert adapter == "frozen" and meta.pos_interpolation == "meta" and frozen[0].pos_interpolation == "timm"
    kwargs = dict(root=shared_data, slices=2, long_edge=56, cache_dir=tmp_path, progress=False)
    a = dataset_embeddings(frozen[0], **kwargs)
    b = dataset_embeddings(meta, **kwargs)  # same weights (same seed), other positions: other files
    assert len(list(tmp_path.glob("emb-*.npz"))) == 4
    assert not np.allclose(a.embeddings["vnc"], b.embeddings["vnc"])


def test_embedding_cache_follows_the_data_and_rebuilds_a_truncated_file(tiny_root, tmp_path: Path) -> None:
    import shutil
    import warnings

    import tifffile
    import torch

    from emlib.models import create_backbone

    root, truth = tiny_root
    torch.manual_seed(0)
    backbone = create_backbone("dinov2_vits14", pretrained=False).eval()
    kwargs = {"slices": 2, "long_edge": 28, "cache_dir": tmp_path / "emb", "progress": False}
    first = dataset_embeddings(backbone, root=root, **kwargs)
    other = tmp_path / "other"
    shutil.copytree(root, other)
    image = truth["vnc"]["images"][0].copy() ^ 255  # same names, other pixels
    tifffile.imwrite(other / "vnc" / "groundtruth-drosophila-vnc-master" / "stack1" / "raw" / "00.tif", image)
    swapped = dataset_embeddings(backbone, root=other, **kwargs)
    assert not np.array_equal(swapped.embeddings["vnc"], first.embeddings["vnc"])  # not served from the cache
    files = sorted((tmp_path / "emb").glob("emb-*.npz"))
    assert len(files) == 3  # Lucchi++ once (same content), VNC twice
    for path in files:
        path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match=r"embedding cache .*\.npz cannot be read \(.*\); it is rebuilt"):
        again = dataset_embeddings(backbone, root=root, **kwargs)
    np.testing.assert_array_equal(again.embeddings["vnc"], first.embeddings["vnc"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset_embeddings(backbone, root=root, **kwargs)
