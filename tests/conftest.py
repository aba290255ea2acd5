"""Shared fixtures: the staged data, tiny synthetic copies in the official layouts, and thread limits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


#: The test modules that read the session's one smoke build of the book (``smoke_book``, tests/book/conftest.py).
SMOKE_BOOK_MODULES: tuple[str, ...] = ("tests/book/test_build.py", "tests/book/test_check.py", "tests/book/test_notebooks.py",
                                     "tests/book/test_exercises.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under pytest-xdist with ``--dist loadgroup`` (the README's test command): every test one at a time, as
    ``--dist load``, except the modules of :data:`SMOKE_BOOK_MODULES`, which go to one worker together,
    so the book is still built once per session.

    The grouping is by module name rather than by ``xdist_group`` marks, which pytest-xdist 3.8 no
    longer sees under pytest 9 (pytest-dev/pytest-xdist#1386).
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SmokeBookScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "smoke_book" if nodeid.split("::")[0] in SMOKE_BOOK_MODULES else super()._split_scope(nodeid)

    return SmokeBookScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def _data_checks(tmp_path_factory: pytest.TempPathFactory):
    """The tests' data copies are synthetic (official names, other pixels): modified data is allowed
    (``EMLIB_ALLOW_MODIFIED_DATA=1``; tests of the refusal unset it), and the slice checks are cached in a
    folder of this session (``EMLIB_CACHE_DIR``), not the user's; subprocesses inherit both."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMLIB_ALLOW_MODIFIED_DATA", "1")
        mp.setenv("EMLIB_CACHE_DIR", str(tmp_path_factory.mktemp("emlib-cache")))
        yield


@pytest.fixture(autouse=True)
def _fresh_feature_stores():
    """Each test starts with no feature store in memory (a frozen run's tokens are shared by the runs of a
    process: :func:`emlib.cache.feature_store`), so what one test trained never warms another's."""
    from emlib.cache import clear_feature_stores

    clear_feature_stores()
    yield
    clear_feature_stores()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The staged copy of both datasets: ``$EMLIB_DATA``, else ``../shared/data`` beside the repo; absolute (a
    relative ``$EMLIB_DATA`` against the cwd pytest was started in), so symlinks to it hold from any folder."""
    path = Path(os.path.abspath(os.environ.get("EMLIB_DATA") or REPO.parent / "shared" / "data"))
    if not (path / "lucchi_pp").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"staged data not found at {path}; CI must set EMLIB_DATA")
        pytest.skip(f"staged data not found at {path}")
    return path


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode is not None:
        img = img.convert(mode)
    img.save(path)


def make_lucchi(root: Path, *, n: int = 12, shape: tuple[int, int] = (48, 64), seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny Lucchi++ copy: ``maskNNNN.png`` images and ``N.png`` labels (Test labels RGBA).

    The label of slice k holds a square whose position encodes k, so a pairing by sorted file
    name (0, 1, 10, 11, 2, ...) would be detected.
    """
    rng = np.random.default_rng(seed)
    base = root / "lucchi_pp" / "Lucchi++"
    truth = {}
    for prefix in ("Train", "Test"):
        images, masks = [], []
        for k in range(n):
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            mask = np.zeros(shape, np.uint8)
            mask[k : k + 5, 2 * k : 2 * k + 5] = 255
            write_png(base / f"{prefix}_In" / f"mask{k:04d}.png", image)
            label = np.dstack([mask, mask, mask, np.full(shape, 255, np.uint8)]) if prefix == "Test" else mask
            write_png(base / f"{prefix}_Out" / f"{k}.png", label)
            images.append(image)
            masks.append(mask > 127)
        truth[f"{prefix.lower()}_images"] = np.stack(images)
        truth[f"{prefix.lower()}_masks"] = np.stack(masks)
    return truth


def make_vnc(root: Path, *, n: int = 10, shape: tuple[int, int] = (56, 56), seed: int = 1) -> dict[str, np.ndarray]:
    """A tiny VNC copy: stack1 raw TIFF + masks (some mode "1"), stack2 raw."""
    import tifffile

    rng = np.random.default_rng(seed)
    base = root / "vnc" / "groundtruth-drosophila-vnc-master"
    images, masks = [], []
    for k in range(n):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        mask = np.zeros(shape, np.uint8)
        mask[k : k + 6, k : k + 9] = 255
        (base / "stack1" / "raw").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(base / "stack1" / "raw" / f"{k:02d}.tif", image)
        write_png(base / "stack1" / "mitochondria" / f"{k:02d}.png", mask, mode="1" if k % 3 == 1 else None)
        (base / "stack2" / "raw").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(base / "stack2" / "raw" / f"{k:02d}.tif", image[::-1])
        images.append(image)
        masks.append(mask > 127)
    return {"images": np.stack(images), "masks": np.stack(masks)}


def _tiny(**changes):
    """The smoke profile's base, shrunk to a run of a few seconds on one CPU core; ``changes`` on top."""
    from emlib.config import get_profile  # here, so that collecting other tests stays light

    base = get_profile("smoke").base.replace(
        train_slices=2, samples_per_epoch=4, epochs=2, batch_size=2, crop=28, eval_window=28, eval_region=56,
        eval_slices=1, head_channels=8, unet_channels=4,
    )
    return base.replace(**changes)


@pytest.fixture(scope="session")
def tiny():
    """The few-second run many test modules train: ``tiny(**changes)`` is a :class:`~emlib.config.RunConfig`,
    the smoke profile's base shrunk to a run of a few seconds on one CPU core, ``changes`` on top."""
    return _tiny


@pytest.fixture()
def tiny_root(tmp_path: Path) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """A data root with tiny copies of both datasets, and the arrays written into it."""
    truth = {"lucchi_pp": make_lucchi(tmp_path), "vnc": make_vnc(tmp_path)}
    return tmp_path, truth


#: One small backbone per family, built with random weights by :func:`small_backbones`.
SMALL_BACKBONES = ("dinov2_vits14", "dinov3_vits16", "openclip_vitb16")


@pytest.fixture(scope="module")
def small_backbones() -> dict:
    """Random-init S/B backbones (name -> Backbone), one per family, in eval mode."""
    from emlib.models.backbones import create_backbone  # here, so that collecting other tests stays light

    torch.manual_seed(0)
    return {name: create_backbone(name, pretrained=False).eval() for name in SMALL_BACKBONES}


def make_disks(root: Path, *, size: int = 112, seed: int = 3) -> float:
    """Overwrite the images and labels of a tiny copy (:func:`make_lucchi`, :func:`make_vnc`) with an
    obvious task: bright disks on a dark, noisy background. Returns the foreground fraction."""
    import tifffile

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    fractions = []

    def slice_pair() -> tuple[np.ndarray, np.ndarray]:
        mask = np.zeros((size, size), bool)
        for _ in range(4):
            cy, cx, r = rng.integers(12, size - 12), rng.integers(12, size - 12), rng.integers(6, 11)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        image = np.clip(rng.normal(60, 15, (size, size)) + 140 * mask, 0, 255).astype(np.uint8)
        fractions.append(mask.mean())
        return image, mask.astype(np.uint8) * 255

    lucchi = root / "lucchi_pp" / "Lucchi++"
    for prefix in ("Train", "Test"):
        for path in sorted((lucchi / f"{prefix}_In").glob("mask*.png")):
            image, mask = slice_pair()
            write_png(path, image)
            write_png(lucchi / f"{prefix}_Out" / f"{int(path.stem[4:])}.png", mask)
    vnc = root / "vnc" / "groundtruth-drosophila-vnc-master"
    for path in sorted((vnc / "stack1" / "raw").glob("*.tif")):
        image, mask = slice_pair()
        tifffile.imwrite(path, image)
        write_png(vnc / "stack1" / "mitochondria" / f"{path.stem}.png", mask)
    for path in sorted((vnc / "stack2" / "raw").glob("*.tif")):
        tifffile.imwrite(path, slice_pair()[0])
    return float(np.mean(fractions))


@pytest.fixture()
def disk_root(tmp_path: Path) -> tuple[Path, float]:
    """A data root in the official layouts whose slices show bright disks to segment (an obvious task)."""
    make_lucchi(tmp_path, shape=(112, 112))
    make_vnc(tmp_path, shape=(112, 112))
    return tmp_path, make_disks(tmp_path)


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory: pytest.TempPathFactory):
    """A local weights hub (:func:`emlib.testing.write_local_hub`, its default backbones), written once per session.

    Not activated: use ``with local_hub.activate():`` (this process) or ``local_hub.env`` (a subprocess).
    """
    from emlib.testing import write_local_hub  # here, so that collecting other tests stays light

    return write_local_hub(tmp_path_factory.mktemp("local-hub"))


@pytest.fixture()
def offline_hub(local_hub, monkeypatch: pytest.MonkeyPatch):
    """The session's local hub, active for one test, with ``$EMLIB_WEIGHTS`` unset (the hubs' own caches only)."""
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with local_hub.activate():
        yield local_hub


@pytest.fixture(scope="session")
def paper_dry_results(local_hub, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The paper dry run's results folder (``paper-dry``, :mod:`emlib.grid.published`), made once per session.

    The runs chapter 7 reads (its backbone's grid) and its latent table, made on the local hub with the
    chapter functions, then exported: ``{"runs": grid's out_dir, "rows": their rows, "latents": the table,
    "folder": the results folder}``. About a minute on 2 CPU cores.
    """
    from emlib.chapters.settings import chapter_runs, chapter_settings, latent_diagnostics
    from emlib.grid.published import RESULTS_ENV, export_results

    runs = tmp_path_factory.mktemp("paper-dry-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EMLIB_WEIGHTS", raising=False)
        mp.delenv(RESULTS_ENV, raising=False)
        with local_hub.activate():
            settings = chapter_settings("paper-dry", device="cpu", data_dir=shared_data, out_dir=runs)
            rows = chapter_runs(settings)
            latents, _ = latent_diagnostics(settings, n_boot=20)
    folder = tmp_path_factory.mktemp("published") / "paper-dry-results"
    export_results([runs / "paper-dry"], folder, machine="the test machine")
    return {"runs": runs, "rows": rows, "latents": latents, "folder": folder}


@pytest.fixture()
def no_weights(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch):
    """No weights anywhere (an empty hub, offline, no $EMLIB_WEIGHTS, no $EMLIB_RESULTS), the staged data; subprocesses
    inherit it. Whatever a chapter shows there, it read: it could not have trained."""
    from emlib.config import get_profile
    from emlib.errors import WeightsError
    from emlib.grid.published import RESULTS_ENV
    from emlib.models.hub import find_weights
    from emlib.testing import LocalHub

    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.setenv("EMLIB_DATA", str(shared_data))
    empty = LocalHub(root=tmp_path / "empty-hub", backbones=())
    with empty.activate():
        with pytest.raises(WeightsError):
            find_weights(get_profile("paper-dry").base.backbone)  # the chapter could not train: whatever it shows was read
        yield empty
