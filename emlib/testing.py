"""A local weights hub for tests, benchmarks and dry runs: random values, the upstream formats and layouts.

:func:`write_local_hub` writes, under one folder, checkpoints whose values are random (seeded) but
whose formats, key names and file layouts are exactly what the hubs serve, so that
``pretrained=True`` runs the very code path it runs online (``HF_HUB_OFFLINE=1`` keeps every
library off the network):

- a **Hugging Face cache** (``<root>/huggingface/hub``): ``models--<org>--<name>/refs/main`` holds a
  commit hash and ``snapshots/<commit>/<file>`` is a relative symlink to ``blobs/<sha256>``, as
  ``huggingface_hub`` writes it. The timm repos (DINOv2, DINOv3) hold ``model.safetensors`` in
  timm's key names; the open_clip repo holds ``open_clip_pytorch_model.bin`` (``torch.save`` of the
  WHOLE CLIP state dict, image and text towers), the file open_clip falls back to;
- a **torch.hub checkpoint folder** (``<root>/torch/hub/checkpoints``) with Meta's DINOv2 file
  ``dinov2_vits14_pretrain.pth`` in Meta's key names (``mask_token`` included), where
  ``torch.hub.load("facebookresearch/dinov2", ...)`` puts it;
- a **Meta-format DINOv3** file (``<root>/meta/dinov3_vits16_pretrain_lvd1689m.pth``: Meta's key
  names from ``dinov3/models/vision_transformer.py`` and ``dinov3/layers``: ``storage_tokens``,
  ``ls1.gamma``, ``attn.qkv.bias`` + ``bias_mask``, ``rope_embed.periods``), under a name that is
  NOT the published one, since random values cannot match the hash a published name carries.

The Meta files hold the same tensors as the timm file, renamed, so every format of one backbone
loads into the same model (:meth:`LocalHub.model_state_dict`). From a shell::

    eval "$(python -m emlib.testing write-local-hub /tmp/hub)"   # prints export K=V lines
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shlex
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from emlib.errors import ConfigError, EmlibError
from emlib.models.registry import get_backbone_spec
from emlib.models.weights import BackboneSpec, build_random_model

__all__ = [
    "LocalHub", "write_local_hub", "DEFAULT_BACKBONES", "FORMATS", "main", "model_shapes", "clip_shapes",
    "meta_dinov2_state_dict", "meta_dinov3_state_dict",
]

#: The smallest backbone of each family, DINOv2 with and without registers: what tests and dry runs use.
DEFAULT_BACKBONES = ("dinov2_vits14", "dinov2_vits14_reg", "dinov3_vits16", "openclip_vitb16")
#: Formats a local hub writes: timm's safetensors, open_clip's whole-CLIP .bin, Meta's .pth.
FORMATS = ("timm", "open_clip", "meta")
_STD = 0.02


def _generator(name: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{name}:{seed}".encode()))  # the CPU generator keeps 32 bits


def _random_like(shapes: dict[str, torch.Size], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Seeded float32 tensors: norm weights near 1, everything else N(0, 0.02), in the order of ``shapes``."""
    out = {}
    for key, shape in shapes.items():
        value = torch.randn(tuple(shape), generator=gen) * _STD
        if len(shape) == 1 and key.endswith(".weight") and ("norm" in key or "ln_" in key):
            value += 1.0
        out[key] = value
    return out


def model_shapes(spec: BackboneSpec) -> dict[str, torch.Size]:
    """Key -> shape of the state dict of the model :func:`~emlib.models.weights.build_random_model` gives.

    Parameters
    ----------
    spec : BackboneSpec
        The backbone.

    Returns
    -------
    dict of str to torch.Size
        In the model's key order; built on the ``meta`` device, so no memory is spent on values.
    """
    with torch.device("meta"):
        return {k: v.shape for k, v in build_random_model(spec).state_dict().items()}


def clip_shapes(spec: BackboneSpec) -> dict[str, torch.Size]:
    """Key -> shape of the WHOLE CLIP state dict (image and text towers) of an open_clip backbone.

    Parameters
    ----------
    spec : BackboneSpec
        An open_clip backbone.

    Returns
    -------
    dict of str to torch.Size
        In open_clip's key order; built on the ``meta`` device, nothing downloaded.
    """
    import open_clip

    logger = logging.getLogger()  # open_clip warns "initialized randomly" on the root logger: that is the point here
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(spec.arch, device="meta")  # no pretrained tag: nothing is downloaded
    finally:
        logger.setLevel(level)
    return {k: v.shape for k, v in model.state_dict().items()}


def meta_dinov2_state_dict(timm_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm DINOv2 state dict under Meta's key names.

    Meta's names are timm's, plus the ``mask_token`` timm's filter drops; ViT-g's SwiGLU
    feed-forward is ``mlp.w12`` / ``mlp.w3`` in Meta's ``SwiGLUFFNFused`` where timm has ``mlp.fc1`` / ``mlp.fc2``.
    With registers (timm's ``reg_token``) Meta stores ``register_tokens`` and a positional embedding
    with a class entry in front (timm folds that entry into ``cls_token``, ``_convert_dinov2``); the
    class entry written here is zero, so the file converts back to exactly the timm tensors.

    Parameters
    ----------
    timm_sd : dict of str to Tensor
        State dict of timm's DINOv2 model.

    Returns
    -------
    dict of str to Tensor
        The same tensors (plus a zero ``mask_token``) under Meta's names.
    """
    out = {}
    # a packed SwiGLU: fc1 gives the gate and the value, twice the width fc2 reads
    swiglu = timm_sd["blocks.0.mlp.fc1.weight"].shape[0] == 2 * timm_sd["blocks.0.mlp.fc2.weight"].shape[1]
    for key, value in timm_sd.items():
        if swiglu:
            key = key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")
        out[key] = value
    if "reg_token" in out:
        out["register_tokens"] = out.pop("reg_token")
        pos = out["pos_embed"]
        out["pos_embed"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    return {**out, "mask_token": torch.zeros(1, timm_sd["cls_token"].shape[-1])}


#: Width of one attention head in every DINOv3 ViT (S/B/L/H+/7B): what the RoPE periods are sized by.
_DINOV3_HEAD_DIM = 64


def meta_dinov3_state_dict(timm_sd: dict[str, torch.Tensor], spec: BackboneSpec) -> dict[str, torch.Tensor]:
    """A timm DINOv3 state dict under Meta's key names (``DinoVisionTransformer`` with ``mask_k_bias=True``,
    ``n_storage_tokens=4``).

    The published S/B/L checkpoints were distilled with all-zero q/k/v biases (why timm builds them
    without a qkv bias); Meta's class still stores ``qkv.bias`` and the mask of its k part.

    Parameters
    ----------
    timm_sd : dict of str to Tensor
        State dict of timm's DINOv3 model.
    spec : BackboneSpec
        The backbone (its ``embed_dim`` and ``depth``).

    Returns
    -------
    dict of str to Tensor
        The same tensors under Meta's names, plus zero q/k/v biases with their mask, RoPE periods
        and a zero ``mask_token``.
    """
    dim, head_dim = spec.embed_dim, _DINOV3_HEAD_DIM
    out = {"cls_token": timm_sd["cls_token"], "storage_tokens": timm_sd["reg_token"],
           "mask_token": torch.zeros(1, dim)}
    out["patch_embed.proj.weight"] = timm_sd["patch_embed.proj.weight"]
    out["patch_embed.proj.bias"] = timm_sd["patch_embed.proj.bias"]
    exponents = 2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)
    out["rope_embed.periods"] = 100.0**exponents  # RopePositionEmbedding(base=100)._init_weights
    mask = torch.ones(3 * dim)
    mask[dim : 2 * dim] = 0
    for i in range(spec.depth):
        b = f"blocks.{i}."
        out[b + "norm1.weight"], out[b + "norm1.bias"] = timm_sd[b + "norm1.weight"], timm_sd[b + "norm1.bias"]
        out[b + "attn.qkv.weight"] = timm_sd[b + "attn.qkv.weight"]
        out[b + "attn.qkv.bias"], out[b + "attn.qkv.bias_mask"] = torch.zeros(3 * dim), mask.clone()
        out[b + "attn.proj.weight"], out[b + "attn.proj.bias"] = timm_sd[b + "attn.proj.weight"], timm_sd[b + "attn.proj.bias"]
        out[b + "ls1.gamma"] = timm_sd[b + "gamma_1"]
        out[b + "norm2.weight"], out[b + "norm2.bias"] = timm_sd[b + "norm2.weight"], timm_sd[b + "norm2.bias"]
        for fc in ("fc1", "fc2"):
            out[f"{b}mlp.{fc}.weight"], out[f"{b}mlp.{fc}.bias"] = timm_sd[f"{b}mlp.{fc}.weight"], timm_sd[f"{b}mlp.{fc}.bias"]
        out[b + "ls2.gamma"] = timm_sd[b + "gamma_2"]
    out["norm.weight"], out["norm.bias"] = timm_sd["norm.weight"], timm_sd["norm.bias"]
    return out


def _hub_file(cache: Path, repo: str, filename: str, write: Callable[[Path], object]) -> Path:
    """Write one file into a Hugging Face cache tree as ``huggingface_hub`` lays it out; returns the snapshot path."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    tmp = blobs / f".{filename}.incomplete"
    write(tmp)
    digest = hashlib.sha256()
    with open(tmp, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    blob = blobs / digest.hexdigest()
    os.replace(tmp, blob)
    commit = hashlib.sha1(f"emlib-local-hub:{repo}".encode()).hexdigest()
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    link = snapshot / filename
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return link


@dataclass
class LocalHub:
    """A local hub written by :func:`write_local_hub`.

    Attributes
    ----------
    root : Path
    backbones : tuple of str
    seed : int
    files : dict of str to dict of str to Path
        ``backbone -> format -> file``; formats are those of :data:`FORMATS` the backbone has
        (``timm`` and ``meta`` for DINOv2/DINOv3, ``open_clip`` for OpenCLIP).
    """

    root: Path
    backbones: tuple[str, ...]
    seed: int = 0
    files: dict[str, dict[str, Path]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point the hubs here, offline (for subprocesses)."""
        return {"HF_HOME": str(self.root / "huggingface"), "HF_HUB_CACHE": str(self.root / "huggingface" / "hub"),
                "TORCH_HOME": str(self.root / "torch"), "HF_HUB_OFFLINE": "1"}

    def state_dict(self, backbone: str, fmt: str) -> dict[str, torch.Tensor]:
        """The tensors written into ``files[backbone][fmt]`` (regenerated from the seed, not read back)."""
        if fmt not in self.files.get(backbone, {}):
            raise ConfigError(f"the local hub holds no {fmt!r} file for {backbone!r}; it holds "
                              f"{ {b: sorted(f) for b, f in self.files.items()} }")
        return _state_dicts(get_backbone_spec(backbone), self.seed)[fmt]

    def model_state_dict(self, backbone: str) -> dict[str, torch.Tensor]:
        """The tensors a backbone built from any of this hub's files must hold (its model's key names)."""
        spec = get_backbone_spec(backbone)
        sds = _state_dicts(spec, self.seed)
        if spec.library == "timm":
            return sds["timm"]
        return {k.removeprefix("visual."): v for k, v in sds["open_clip"].items() if k.startswith("visual.")}

    @contextlib.contextmanager
    def activate(self) -> Iterator[LocalHub]:
        """Point this process at the hub (``os.environ`` and ``huggingface_hub.constants``), offline; restored after."""
        import torch.hub
        from huggingface_hub import constants

        saved_env = {k: os.environ.get(k) for k in self.env}
        names = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE")
        saved_constants = {k: getattr(constants, k) for k in names}
        saved_hub_dir = getattr(torch.hub, "_hub_dir", None)
        os.environ.update(self.env)
        constants.HF_HOME, constants.HF_HUB_OFFLINE = self.env["HF_HOME"], True
        constants.HF_HUB_CACHE = constants.HUGGINGFACE_HUB_CACHE = self.env["HF_HUB_CACHE"]
        torch.hub._hub_dir = None  # so that torch.hub.get_dir() follows TORCH_HOME
        try:
            yield self
        finally:
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            for key, value in saved_constants.items():
                setattr(constants, key, value)
            torch.hub._hub_dir = saved_hub_dir


def _state_dicts(spec: BackboneSpec, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Every format's tensors for ``spec``: ``{'timm': ..., 'meta': ...}`` or ``{'open_clip': ...}``."""
    gen = _generator(spec.name, seed)
    if spec.library == "open_clip":
        return {"open_clip": _random_like(clip_shapes(spec), gen)}
    timm_sd = _random_like(model_shapes(spec), gen)
    if spec.family == "dinov2":
        return {"timm": timm_sd, "meta": meta_dinov2_state_dict(timm_sd)}
    return {"timm": timm_sd, "meta": meta_dinov3_state_dict(timm_sd, spec)}


def write_local_hub(
    root: str | os.PathLike[str], backbones: Sequence[str] = DEFAULT_BACKBONES, *, seed: int = 0,
) -> LocalHub:
    """Write a local hub of random-valued checkpoints in the upstream formats and layouts (see the module docstring).

    Parameters
    ----------
    root : path-like
        Folder to write into (created; files already there are replaced).
    backbones : sequence of str, default=DEFAULT_BACKBONES
        Registered backbones; each family's files as its hubs serve them.
    seed : int, default=0
        The same seed writes the same bytes.

    Returns
    -------
    LocalHub
        With ``.env`` for subprocesses and ``.activate()`` for this process.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     hub = write_local_hub(d, ["dinov2_vits14"])
    ...     sorted(hub.files["dinov2_vits14"]), hub.files["dinov2_vits14"]["meta"].name
    (['meta', 'timm'], 'dinov2_vits14_pretrain.pth')
    """
    root = Path(root).expanduser().resolve()
    hub = LocalHub(root, tuple(backbones), seed)
    cache = Path(hub.env["HF_HUB_CACHE"])
    for name in hub.backbones:
        spec = get_backbone_spec(name)
        sds = _state_dicts(spec, seed)
        files: dict[str, Path] = {}
        if spec.library == "open_clip":
            files["open_clip"] = _hub_file(cache, spec.hf_repo, "open_clip_pytorch_model.bin",
                                           lambda p, sd=sds["open_clip"]: torch.save(sd, p))
        else:
            files["timm"] = _hub_file(cache, spec.hf_repo, "model.safetensors",
                                      lambda p, sd=sds["timm"]: save_file({k: v.contiguous() for k, v in sd.items()}, str(p)))
            if spec.family == "dinov2":  # Meta's published name, where torch.hub keeps it
                meta = root / "torch" / "hub" / "checkpoints" / spec.weights_filename
            else:  # not the published name: random values cannot carry the published hash
                meta = root / "meta" / f"{spec.weights_filename.rsplit('-', 1)[0]}.pth"
            meta.parent.mkdir(parents=True, exist_ok=True)
            torch.save(sds["meta"], meta)
            files["meta"] = meta
        hub.files[name] = files
    return hub


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m emlib.testing write-local-hub ROOT [NAME ...] [--seed N]``: write a hub, print ``export`` lines."""
    parser = argparse.ArgumentParser(prog="python -m emlib.testing", description="test helpers of emlib")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("write-local-hub", help="write random-valued checkpoints in the hubs' formats and layouts")
    cmd.add_argument("root", help="folder to write into")
    cmd.add_argument("backbones", nargs="*", help=f"registered backbones (default: {' '.join(DEFAULT_BACKBONES)})")
    cmd.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        hub = write_local_hub(args.root, tuple(args.backbones) or DEFAULT_BACKBONES, seed=args.seed)
    except EmlibError as err:
        print(f"python -m emlib.testing: error: {err}", file=sys.stderr)
        return 2
    for key, value in hub.env.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
