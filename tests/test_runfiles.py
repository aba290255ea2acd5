"""Run-folder and cache files (emlib.runfiles): atomic writes, bit-exact state files, and nothing is ever unpickled.

The crafted-pickle test puts a file that runs code when unpickled (it makes a folder) in the place
of every file emlib reads from a run folder or a cache, then calls every reader: each one refuses
the file in one sentence naming it (run state) or rebuilds it (caches), and the code never runs.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emlib.cache import FeatureCache
from emlib.errors import DataError, EmlibError
from emlib.grid.runner import read_results, run_configs, run_folder, run_one
from emlib.latents import dataset_embeddings, load_backbone_for_latents
from emlib.models import create_backbone
from emlib.runfiles import (
    ADAPTER,
    CHECKPOINT,
    CONFIG,
    HISTORY,
    LEGACY_PICKLES,
    METRICS,
    MODEL,
    file_sha256,
    load_state,
    save_state,
    write_atomic,
    write_json,
)
from emlib.train import fit, load_trained


class _Payload:
    """Unpickling this makes the folder ``marker`` (a harmless stand-in for any code an attacker wants run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


def _craft(path: Path, marker: Path) -> None:
    """What an attacker would leave in a run folder: a torch pickle (a zip holding ``data.pkl``)."""
    path.unlink(missing_ok=True)
    torch.save(_Payload(marker), path)


def test_the_crafted_file_does_run_code_when_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _craft(tmp_path / "x.pt", marker)
    torch.load(tmp_path / "x.pt", weights_only=False)  # what emlib did with checkpoint.pt and model.pt
    assert marker.is_dir()


@pytest.fixture(scope="module")
def finished_run(tiny, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A grid folder with one finished tiny LoRA run (every file a run folder can hold)."""
    out = tmp_path_factory.mktemp("grid")
    cfg = tiny(regime="lora")
    run_configs([cfg], out, root=shared_data, progress=False)
    return out, cfg


def _readers(out: Path, cfg, root: Path) -> dict:
    run = run_folder(cfg, out, root=root)
    return {
        "load_trained": lambda: load_trained(run),
        "run_one": lambda: run_one(cfg, out, root=root, progress=False),
        "read_results": lambda: read_results(out),
        "latents": lambda: load_backbone_for_latents(cfg.backbone, pretrained=False, adapter_run=run),
        "resume": lambda: fit(cfg, run, root=root, progress=False),  # last: a resumed run writes its files again
    }


#: File -> readers that must refuse it (the others never read it, so they succeed).
REFUSED = {
    CHECKPOINT: {"resume"},
    MODEL: {"load_trained"},
    ADAPTER: {"load_trained", "latents"},
    CONFIG: {"load_trained", "latents"},
    HISTORY: {"load_trained"},
    METRICS: {"run_one", "read_results"},
    **{name: set() for name in LEGACY_PICKLES},
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_crafted_pickle_in_a_run_folder_never_runs(name: str, finished_run, shared_data: Path, tmp_path: Path) -> None:
    source, cfg = finished_run
    out = tmp_path / "grid"
    shutil.copytree(source, out)
    run = run_folder(cfg, out, root=shared_data)
    marker = tmp_path / "ran"
    _craft(run / name, marker)
    for reader, call in _readers(out, cfg, shared_data).items():
        if reader in REFUSED[name]:
            with pytest.raises(EmlibError) as info:
                call()
            assert name in str(info.value) and "\n" not in str(info.value), (reader, str(info.value))
        else:
            call()
        assert not marker.exists(), f"{reader} ran the code in {name}"


def test_a_crafted_pickle_as_a_feature_cache_is_rebuilt_without_running(tmp_path: Path) -> None:
    conv = torch.nn.Conv2d(3, 4, 2, stride=2)
    inputs = torch.randn(2, 3, 8, 8)
    cache = FeatureCache(conv, "key", directory=tmp_path, dtype=torch.float32)
    cache.get([0, 1], lambda idx: inputs[idx], torch.device("cpu"))
    cache.save()
    marker = tmp_path / "ran"
    _craft(cache.path, marker)
    with pytest.warns(RuntimeWarning, match=r"key\.safetensors cannot be read .* it is rebuilt"):
        again = FeatureCache(conv, "key", directory=tmp_path, dtype=torch.float32)
    assert len(again) == 0 and not marker.exists()
    again.get([0, 1], lambda idx: inputs[idx], torch.device("cpu"))
    again.save()
    assert len(FeatureCache(conv, "key", directory=tmp_path, dtype=torch.float32)) == 2  # the rebuilt file reads back


@pytest.mark.parametrize("kind", ["torch pickle", "numpy object array"])
def test_a_crafted_pickle_as_an_embedding_cache_is_rebuilt_without_running(kind: str, tiny_root, tmp_path: Path) -> None:
    root, _ = tiny_root
    torch.manual_seed(0)
    backbone = create_backbone("dinov2_vits14", pretrained=False).eval()
    kwargs = {"root": root, "slices": 2, "long_edge": 28, "cache_dir": tmp_path / "emb", "progress": False}
    first = dataset_embeddings(backbone, **kwargs)
    marker = tmp_path / "ran"
    for path in (tmp_path / "emb").glob("emb-*.npz"):
        if kind == "torch pickle":
            _craft(path, marker)
        else:
            with open(path, "wb") as handle:  # np.load(allow_pickle=True) would run it
                np.savez(handle, embeddings=np.array([_Payload(marker)], dtype=object))
    with pytest.warns(RuntimeWarning, match=r"embedding cache .*emb-.*\.npz cannot be read"):
        again = dataset_embeddings(backbone, **kwargs)
    assert not marker.exists()
    for name in first.embeddings:
        np.testing.assert_array_equal(first.embeddings[name], again.embeddings[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt files read back without a word
        dataset_embeddings(backbone, **kwargs)


def test_a_truncated_run_file_is_refused_with_the_fix(finished_run, shared_data: Path, tmp_path: Path) -> None:
    source, cfg = finished_run
    out = tmp_path / "grid"
    shutil.copytree(source, out)
    run = run_folder(cfg, out, root=shared_data)
    for name, reader, fix in (
        (MODEL, "load_trained", "delete .* and train the run again with `emlib grid` or fit"),
        (METRICS, "read_results", "delete it and run the same command again"),
        (CHECKPOINT, "resume", "delete it to train this run again from its first epoch"),
    ):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError, match=rf"{name} cannot be read \(.*\); {fix}"):
            _readers(out, cfg, shared_data)[reader]()
        (run / name).write_bytes(data)


# ----------------------------------------------------------------------------- the pieces


def test_state_files_round_trip_bit_for_bit(tmp_path: Path) -> None:
    optimizer_like = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 5)}, 1: {"step": torch.tensor(3.0)}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "foreach": None, "params": [0, 1]}],
    }
    view = torch.randn(6, 2)[1:3]  # a view of a bigger tensor is stored as its own
    state = {"digest": "abc", "epoch": 2, "opt": optimizer_like, "history": [{"loss": math.nan}], "view": view}
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors", fix="")
    assert list(back["opt"]["state"]) == [0, 1]  # int keys stay ints (torch's optimizer needs them)
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.999) and back["opt"]["param_groups"][0]["foreach"] is None
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], optimizer_like["state"][0]["exp_avg"])
    assert torch.equal(back["view"], view) and math.isnan(back["history"][0]["loss"]) and back["epoch"] == 2
    header = load_state(tmp_path / "s.safetensors", fix="", tensors=False)
    assert header["digest"] == "abc" and header["view"] is None


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"rows": [1]})

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, fail)
    assert path.read_text() == '{\n  "rows": [\n    1\n  ]\n}' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_file_sha256_follows_the_content(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"a")
    first = file_sha256(path)
    os.utime(path, ns=(1, 1))
    path.write_bytes(b"b")
    assert file_sha256(path) != first and file_sha256(path) == file_sha256(path)


def test_a_foreign_file_is_not_a_state_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    pd.DataFrame({"a": [1]}).to_csv(path)
    with pytest.raises(DataError, match=r"model\.safetensors cannot be read \(SafetensorError: .*\); retrain"):
        load_state(path, fix="retrain")


# ----------------------------------------------------------------------------- no room, temporary names, run locks (issue 23)

_NO_ROOM_SCRIPT = """
import resource, sys, time, torch
from pathlib import Path
from emlib.errors import StorageError
from emlib.runfiles import save_state, write_json
folder = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # ulimit -f: what a shell or a cluster job may set
for write in (lambda: save_state(folder / "checkpoint.safetensors", {"w": torch.zeros(100_000)}),
              lambda: write_json(folder / "metrics.json", {"rows": list(range(100_000))})):
    t0 = time.perf_counter()
    try:
        write()
    except StorageError as err:
        print(f"{time.perf_counter() - t0:.3f}", err)
"""


def test_a_file_size_limit_keeps_the_previous_file_and_names_the_folder_and_the_size(tmp_path: Path) -> None:
    """Issue 23: ``ulimit -f`` while a checkpoint or a run file is written (SafetensorError "File too large" before)."""
    import subprocess
    import sys

    save_state(tmp_path / CHECKPOINT, {"w": torch.ones(10)})
    write_json(tmp_path / METRICS, {"rows": [1]})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", _NO_ROOM_SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stderr
    for line, name, size in zip(lines, (CHECKPOINT, METRICS), ("400.", "1.")):
        seconds, message = line.split(" ", 1)
        assert float(seconds) < 10
        assert message.startswith(f"{name} (about {size}") and f"larger than this process's file-size limit of 200.0 kB" in message
        assert f"write in {tmp_path} (the previous {name} is kept)" in message and "`ulimit -f unlimited`" in message
        assert "run the same command again, which resumes" in message and "\n" not in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the old files, and no temporary file


@pytest.mark.parametrize("raised", [
    OSError(28, "No space left on device"),
    RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'),
])
def test_a_full_disk_keeps_the_previous_file_and_names_the_space_needed(raised: Exception, tmp_path: Path) -> None:
    """A full disk, as Python and as safetensors (a Rust io::Error) report it: one sentence, the old file kept."""
    from emlib.errors import StorageError

    path = tmp_path / CHECKPOINT
    save_state(path, {"w": torch.ones(3)})
    old = path.read_bytes()

    def full(tmp: Path) -> None:
        tmp.write_bytes(b"x" * 10)
        raise raised

    with pytest.raises(StorageError) as caught:
        write_atomic(path, full, size=3_500_000)
    message = str(caught.value)
    assert message.startswith(f"the disk of {tmp_path} has no room for {CHECKPOINT} (about 3.5 MB needed, ")
    assert " free; the previous checkpoint.safetensors is kept); free that much space there (or choose another --out" in message
    assert isinstance(caught.value, EmlibError) and isinstance(caught.value, OSError)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]
    with pytest.raises(StorageError, match=r"no room for new\.json \(more than the 10 bytes written needed, .*no new\.json "
                                           r"was left"):
        write_atomic(tmp_path / "new.json", full)  # size unknown: what was written is named
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]
    with pytest.raises(OSError, match="Permission denied") as other:  # other failures are not about room: raised as they are
        write_atomic(path, lambda tmp: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    assert not isinstance(other.value, EmlibError)


def test_temporary_names_are_per_process_and_per_write(tmp_path: Path) -> None:
    """Issue 23: two writers of one file never share a temporary file (one fixed ``.NAME.incomplete`` before)."""
    import threading

    seen: list[str] = []
    gate = threading.Barrier(2)

    def write(tmp: Path) -> None:
        seen.append(tmp.name)
        tmp.write_text(tmp.name)
        gate.wait(timeout=10)  # both temporary files exist at once

    threads = [threading.Thread(target=write_atomic, args=(tmp_path / "results.csv", write)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(set(seen)) == 2 and all(n.startswith(f".results.csv.{os.getpid()}-") and n.endswith(".incomplete") for n in seen)
    assert (tmp_path / "results.csv").read_text() in seen and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_a_run_lock_is_held_by_one_holder_and_named_to_the_others(tmp_path: Path) -> None:
    from emlib.runfiles import LOCK, run_lock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / f".{CHECKPOINT}.99999-0.incomplete").write_text("left by a killed writer")
    holders: list[str] = []
    with run_lock(run_dir) as held:
        assert held and not (run_dir / f".{CHECKPOINT}.99999-0.incomplete").exists()  # nobody else writes here
        with run_lock(run_dir, wait=False, on_busy=holders.append) as second:
            assert second is False
        assert (run_dir / LOCK).read_text().startswith(f"pid {os.getpid()} on ")
    assert holders == [f"pid {os.getpid()} on {__import__('socket').gethostname()}"]
    assert list(run_dir.iterdir()) == []  # released: no lock file is left
    with run_lock(run_dir, wait=False, on_busy=holders.append) as again:  # free for the next one
        assert again is True and len(holders) == 1
    (run_dir / LOCK).write_text("pid 1 on a killed host\n")  # left by a killed holder: its flock went with it
    with run_lock(run_dir, wait=False, on_busy=holders.append) as after_a_kill:
        assert after_a_kill is True and len(holders) == 1
    assert list(run_dir.iterdir()) == []
