"""The console script: data info/verify print what they promise; user errors are one line, exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import emlib.config as config
from emlib.cli import main
from emlib.config import grid_configs


def test_data_info_prints_every_split(tiny_root, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = tiny_root
    assert main(["data", "info", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    for text in ("Lucchi++", "VNC", "train", "test", "unlabelled", "5x5x5", "47.5x4.6x4.6", "%"):
        assert text in out
    assert "12" in out  # tiny Lucchi++ copy has 12 slices per split


def test_data_audit_prints_the_pairs_and_the_perfect_model_bound(tiny_root, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = tiny_root
    assert main(["data", "audit", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "scripts/data/compose_em_datasets.py" in out
    lines = {line.split()[0] + " " + line.split()[1]: line.split()[2:] for line in out.splitlines()
             if line.strip().startswith(("lucchi_pp", "vnc", "mixed"))}
    assert lines["lucchi_pp test"][:2] == ["12", "2"] and lines["mixed test"][:2] == ["15", "5"]
    assert lines["lucchi_pp test"][-1] == f"{74 / 526:.4f}"
    assert "note:" not in out  # the copy has every training slice


def test_missing_data_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib: error: no Lucchi++ data at") and err.count("\n") == 1
    assert "Traceback" not in err


def test_unknown_dataset_is_one_line_exit_2(tiny_root, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = tiny_root
    assert main(["data", "verify", "lucchi", "--root", str(root), "--quiet"]) == 2
    assert "unknown dataset 'lucchi'" in capsys.readouterr().err


def test_verify_staged_vnc(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "verify", "vnc", "--root", str(shared_data), "--quiet"]) == 0
    assert "vnc: 60 of 60 files match the official pixels (complete)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- bad input, one sentence, nothing written
#
# Each case builds what a user would have (a data copy, an output folder), runs one command and
# expects: exit status 2, one line "emlib: error: <sentence>" matching the pattern, no traceback,
# and no file added, changed or removed anywhere under the test's folder.


def _tiny_data(tmp: Path) -> Path:
    from .conftest import make_lucchi, make_vnc

    root = tmp / "data"
    make_lucchi(root)
    make_vnc(root)
    return root


def _linked_staged_copy(shared: Path, dest: Path, *, swap: bool = False, drop: str | None = None) -> Path:
    """The staged data as symlinks: Lucchi++'s Train_* and Test_* folders swapped, or one VNC file left out."""
    lucchi = dest / "lucchi_pp" / "Lucchi++"
    lucchi.mkdir(parents=True)
    for sub in ("Train_In", "Train_Out", "Test_In", "Test_Out"):
        other = ("Test" if sub.startswith("Train") else "Train") + sub[sub.index("_"):] if swap else sub
        (lucchi / sub).symlink_to(shared / "lucchi_pp" / "Lucchi++" / other)
    vnc = dest / "vnc" / "groundtruth-drosophila-vnc-master"
    staged = shared / "vnc" / "groundtruth-drosophila-vnc-master"
    for sub in ("stack1/raw", "stack1/mitochondria", "stack2/raw"):
        (vnc / sub).mkdir(parents=True)
        for file in (staged / sub).iterdir():
            if f"{sub}/{file.name}" != drop:
                (vnc / sub / file.name).symlink_to(file)
    return dest


def _checkpoint_or_metrics(name: str):
    def setup(tmp: Path, shared: Path, monkeypatch) -> list[str]:
        from emlib.grid.runner import run_folder

        root, out = _tiny_data(tmp), tmp / "runs"
        folder = run_folder(config.grid_configs("t")[0], out, root=root)
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b'{"rows": [' if name.endswith(".json") else b"\x00" * 40)
        return ["grid", "--profile", "t", "--out", str(out), "--root", str(root)]

    return setup


def _stray(where: str, command: str):
    def setup(tmp: Path, shared: Path, monkeypatch) -> list[str]:
        root = _tiny_data(tmp)
        tifffile.imwrite(root / "vnc" / "groundtruth-drosophila-vnc-master" / where / "old_backup.tif", np.zeros((4, 4), np.uint8))
        if command == "info":
            return ["data", "info", "--root", str(root)]
        return ["grid", "--profile", "t", "--out", str(tmp / "runs"), "--root", str(root)]

    return setup


def _out(kind: str):
    def setup(tmp: Path, shared: Path, monkeypatch) -> list[str]:
        root = _tiny_data(tmp)
        (tmp / "file").write_text("not a folder")
        out = {"file": tmp / "file", "under a file": tmp / "file" / "runs", "read-only": tmp / "ro" / "runs"}[kind]
        if kind == "read-only":
            (tmp / "ro").mkdir(mode=0o555)
            if os.geteuid() == 0:  # root may write anywhere: let the permission check see what a user would
                real = os.access
                monkeypatch.setattr(os, "access", lambda path, mode: real(path, mode) and Path(path) != tmp / "ro")
        return ["grid", "--profile", "t", "--out", str(out), "--root", str(root)]

    return setup


def _no_label(tmp: Path, shared: Path, monkeypatch) -> list[str]:
    root = _tiny_data(tmp)
    (root / "lucchi_pp" / "Lucchi++" / "Test_Out" / "3.png").unlink()
    return ["grid", "--profile", "t", "--out", str(tmp / "runs"), "--root", str(root)]


def _env_data_empty(tmp: Path, shared: Path, monkeypatch) -> list[str]:
    (tmp / "empty").mkdir()
    monkeypatch.setenv("EMLIB_DATA", str(tmp / "empty"))
    return ["grid", "--profile", "t", "--out", str(tmp / "runs")]


def _download_into_env_data(tmp: Path, shared: Path, monkeypatch) -> list[str]:
    monkeypatch.setenv("EMLIB_DATA", str(_tiny_data(tmp)))
    return ["data", "download", "lucchi_pp", "--force"]


CASES = {
    "output folder is a file": (_out("file"), r"the output folder .*/file is an existing file; choose a folder path for --out"),
    "output folder under a file": (
        _out("under a file"), r"the output folder .*/file/runs cannot be created because .*/file is a file; choose another --out"),
    "output folder not writable": (_out("read-only"), r"the folder .*/ro is not writable, so .*/ro/runs cannot hold results"),
    "no data at --root": (
        lambda tmp, shared, mp: ["grid", "--profile", "t", "--out", str(tmp / "runs"), "--root", str(tmp)],
        r"no Lucchi\+\+ data at .*; run `emlib data download lucchi_pp --root .* --force`$"),
    "EMLIB_DATA is an empty folder": (
        _env_data_empty, r"no Lucchi\+\+ data at .*; EMLIB_DATA points at .*empty, a local copy that emlib never downloads "
        r"into, so put the official files there, or unset EMLIB_DATA and run `emlib data download lucchi_pp`$"),
    "download --force into EMLIB_DATA": (
        _download_into_env_data, r"EMLIB_DATA points at .*, a local copy that emlib never downloads into; to download "
        r"Lucchi\+\+, unset EMLIB_DATA or pass --root with another folder$"),
    "Train_* and Test_* swapped": (
        lambda tmp, shared, mp: ["grid", "--profile", "t", "--out", str(tmp / "runs"),
                                 "--root", str(_linked_staged_copy(shared, tmp / "data", swap=True))],
        r"Train_In/mask0000\.png holds the official pixels of Test_In/mask0000\.png: the folders Train_In and Test_In "
        r"are swapped, so rename them back"),
    "stray file in VNC stack2": (
        _stray("stack2/raw", "info"), r"stack2/raw holds old_backup\.tif, which is not an official VNC slice "
        r"\(00\.tif \.\.\. 19\.tif\); move it out of that folder$"),
    "stray file in VNC stack1": (_stray("stack1/raw", "grid"), r"stack1/raw holds old_backup\.tif, which is not an official"),
    "a label deleted (verify)": (
        lambda tmp, shared, mp: ["data", "verify", "vnc", "--quiet", "--root",
                                 str(_linked_staged_copy(shared, tmp / "data", drop="stack1/mitochondria/05.png"))],
        r"the VNC copy at .* lacks stack1/mitochondria/05\.png \(the label of stack1/raw/05\.tif, which is there\); "
        r"restore it \(run `emlib data download vnc --root"),
    "a label deleted (grid)": (_no_label, r"image mask0003\.png has no label .*Test_Out/3\.png; restore that file \(run "),
    "missing weights file": (
        lambda tmp, shared, mp: ["grid", "--profile", "t", "--out", str(tmp / "runs"), "--root", str(_tiny_data(tmp)),
                                 "--weights", str(tmp / "none.pth")],
        r"weights file .*none\.pth for dinov2_vits14 does not exist"),
    "weights missing, offline": (
        lambda tmp, shared, mp: [*_offline_empty_hub(tmp, mp), "grid", "--profile", "quick", "--out", str(tmp / "runs"),
                                 "--root", str(_tiny_data(tmp)), "--regime", "frozen", "--train-set", "lucchi_pp"],
        r"no pretrained weights for dinov2_vits14 on this machine \(looked in .*\) and the hub cannot be used "
        r"\(HF_HUB_OFFLINE is set\); run `emlib weights fetch dinov2_vits14` where there is internet, pass "
        r"`--weights dinov2_vits14=FILE`, or use `--random-weights` \(tests only\)\.$"),
    "--weights FILE for three backbones": (
        lambda tmp, shared, mp: ["grid", "--profile", "paper", "--out", str(tmp / "runs"), "--weights", str(tmp / "w.pth")],
        r"--weights .*w\.pth does not say which backbone it is for and the selected runs use dinov2_vitl14_reg, dinov3_vitl16, "
        r"openclip_vitl14; give one --weights NAME=FILE per backbone, e.g. --weights dinov2_vitl14_reg=.*w\.pth$"),
    "--weights for a backbone not in the grid": (
        lambda tmp, shared, mp: ["grid", "--profile", "t", "--out", str(tmp / "runs"), "--weights", "openclip_vitb16=x.bin"],
        r"--weights openclip_vitb16=\.\.\. names a backbone no selected run uses \(dinov2_vits14\); drop it, or select "
        r"that backbone \(--backbone openclip_vitb16\)$"),
    "weights fetch offline": (
        lambda tmp, shared, mp: [*_offline_empty_hub(tmp, mp), "weights", "fetch", "dinov3_vits16"],
        r"cannot download the weights of dinov3_vits16: the hub cannot be used \(HF_HUB_OFFLINE is set\); run "
        r"`emlib weights fetch dinov3_vits16` on a machine with internet"),
    "device that does not exist": (
        lambda tmp, shared, mp: ["grid", "--profile", "t", "--out", str(tmp / "runs"), "--device", "gpu"],
        r"device='gpu' is not allowed; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'$"),
    "damaged checkpoint": (
        _checkpoint_or_metrics("checkpoint.safetensors"),
        r"checkpoint\.safetensors cannot be read \(SafetensorError: .*\); delete it to train this run again from its first epoch$"),
    "damaged metrics.json": (
        _checkpoint_or_metrics("metrics.json"),
        r"metrics\.json cannot be read \(JSONDecodeError: .*\); delete it and run the same command again to test the run again"),
}


def _offline_empty_hub(tmp: Path, monkeypatch) -> list[str]:
    """Hubs forced offline with empty caches (nothing is created), no $EMLIB_WEIGHTS; returns no arguments."""
    from huggingface_hub import constants

    from emlib.testing import LocalHub

    for key, value in LocalHub(tmp / "hub", ()).env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp / "hub" / "huggingface" / "hub"))
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    return []


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(Path(d, f).relative_to(folder)): (os.lstat(Path(d, f)).st_size, os.lstat(Path(d, f)).st_mtime_ns)
        for d, _, files in os.walk(folder) for f in files
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(
    tiny, case: str, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup, pattern = CASES[case]
    monkeypatch.setitem(config.PROFILES, "t", config.Profile(
        name="t", description="test", base=tiny(), backbones=("dinov2_vits14",), regimes=("frozen", "lora"),
        train_sets=("lucchi_pp",),
    ))
    monkeypatch.delenv("EMLIB_DATA", raising=False)
    argv = setup(tmp_path, shared_data, monkeypatch)
    before = _files(tmp_path)
    assert main([*argv, "--quiet"] if argv[0] == "grid" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(pattern, err.strip()), err
    assert _files(tmp_path) == before  # nothing half-written (nor lost)


def test_the_console_script_never_prints_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for argv in (["grid", "--out", str(tmp_path / "file")], ["data", "verify", "lucchi", "--root", str(tmp_path)]):
        done = subprocess.run([sys.executable, "-m", "emlib.cli", *argv], capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 2 and done.stderr.startswith("emlib: error: "), done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- weights


def test_offline_grid_without_weights_ends_in_seconds(tmp_path: Path, monkeypatch, capsys) -> None:
    import socket

    import emlib.grid.runner as runner
    import emlib.models.hub as hub

    _offline_empty_hub(tmp_path, monkeypatch)
    # in seconds: before any run is trained, with no connection, probe or download even tried
    attempts, calls = [], {"fit": 0, "_probe": 0, "_download": 0}

    def connect(self, address):
        attempts.append(address)
        raise ConnectionRefusedError(address)

    def counted(module, name):
        def stand_in(*args, **kwargs):
            calls[name] += 1
            raise AssertionError(f"{name} ran")
        monkeypatch.setattr(module, name, stand_in)

    monkeypatch.setattr(socket.socket, "connect", connect)
    counted(runner, "fit"), counted(hub, "_probe"), counted(hub, "_download")
    assert main(["grid", "--profile", "quick", "--out", str(tmp_path / "runs"), "--root", str(_tiny_data(tmp_path)),
                 "--quiet"]) == 2
    assert attempts == [] and calls == {"fit": 0, "_probe": 0, "_download": 0}
    err = capsys.readouterr().err
    assert "`--weights dinov2_vits14=FILE`" in err and "weights=PATH" not in err and err.count("\n") == 1


def test_weights_list_and_check(offline_hub, capsys) -> None:
    assert main(["weights", "list", "dinov2_vits14", "openclip_vitb16", "dinov3_vitl16"]) == 0
    out = capsys.readouterr().out
    assert "hf:laion/CLIP-ViT-B-16-laion2B-s34B-b88K/open_clip_pytorch_model.bin" in out
    assert str(offline_hub.files["dinov2_vits14"]["meta"]) in out and "about 1.2 GB" in out and "8aa4cbdd" in out
    assert "dinov3-license (gated)" in out and " no " in out  # dinov3_vitl16 is not on the local hub
    assert main(["weights", "check", "--profile", "smoke", "openclip_vitb16"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("openclip_vitb16: ok, pretrained (laion2b_s34b_b88k) from hf:laion/") and out[-1] == "all present"
    assert main(["weights", "check", "dinov2_vits14", "dinov3_vitl16"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("dinov3_vitl16: no pretrained weights for dinov3_vitl16 on this machine")
    assert "`emlib weights fetch dinov3_vitl16`" in out[1] and out[-1] == "1 of 2 missing or unusable"


def test_weights_check_takes_name_file_pairs(offline_hub, tmp_path: Path, capsys) -> None:
    explicit = offline_hub.files["dinov3_vits16"]["meta"]
    assert main(["weights", "check", "--weights", f"dinov3_vits16={explicit}"]) == 0
    assert capsys.readouterr().out.startswith(f"dinov3_vits16: ok, pretrained (lvd1689m) from {explicit} sha256:")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["weights", "check", "--weights", f"dinov2_vits14={garbage}"]) == 1
    assert f"dinov2_vits14: {garbage} is neither a safetensors file nor a torch checkpoint" in capsys.readouterr().out


def test_grid_weights_pairs_route_per_backbone() -> None:
    from emlib.cli import weights_argument

    selection = {"backbone": None, "regimes": None, "train_sets": ["paired"], "seeds": [0]}
    files = weights_argument(["dinov2_vitl14_reg=a.pth", "openclip_vitl14=/w/b.bin"])
    assert files == {"dinov2_vitl14_reg": "a.pth", "openclip_vitl14": "/w/b.bin"}
    configs = grid_configs("paper", **selection, weights=files, pretrained=True)
    routed = {(c.regime, c.backbone if c.regime != "unet" else "unet"): c.weights for c in configs}
    assert routed[("frozen", "dinov2_vitl14_reg")] == routed[("lora", "dinov2_vitl14_reg")] == "a.pth"
    assert routed[("lora", "openclip_vitl14")] == "/w/b.bin"
    assert routed[("frozen", "dinov3_vitl16")] is None  # no file given: $EMLIB_WEIGHTS and the hubs
    single = grid_configs("quick", **selection, weights=weights_argument(["w.pth"]), pretrained=True)
    assert {(c.regime, c.weights) for c in single} == {("frozen", "w.pth"), ("lora", "w.pth"), ("unet", None)}  # a bare FILE


def test_a_closed_pipe_on_stdout_is_not_an_error() -> None:
    """`emlib weights list | head -1`: the reader goes away; no "free space" advice, no traceback, exit 0."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import sys; from emlib.cli import main; sys.exit(main(['weights', 'list']))"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the table is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "free space" not in err and "Traceback" not in err and "Exception ignored" not in err, err


def test_plan_and_status_need_no_weights_and_name_the_folders_a_fetch_will_keep(
    tmp_path: Path, monkeypatch, capsys, local_hub
) -> None:
    """`--plan` and `--status` load nothing, so offline without weights they still answer; the run folders they name
    are the ones the runs get once the hub's files are fetched (here: the local hub, offline)."""
    _offline_empty_hub(tmp_path, monkeypatch)
    root, out = str(_tiny_data(tmp_path)), str(tmp_path / "runs")
    args = ["grid", "--profile", "quick", "--regime", "frozen", "--train-set", "vnc", "--out", out, "--root", root]
    assert main([*args, "--status"]) == 0
    missing = capsys.readouterr().out
    assert main([*args, "--plan"]) == 0 and "plan:" in capsys.readouterr().out
    with local_hub.activate():
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-hub"))  # the Hugging Face cache: what a fetch fills
        assert main([*args, "--status"]) == 0
    fetched = capsys.readouterr().out
    run = next(line.split()[0] for line in missing.splitlines() if "missing" in line)
    assert run in fetched, (missing, fetched)
