"""Where a backbone's pretrained weights file is, and fetching it: one resolution for every path.

:func:`find_weights` is the one place that decides which file a backbone loads, online and offline
alike. For backbone ``NAME`` it looks, in this order:

1. an explicit file (``weights=`` in Python, ``--weights NAME=FILE`` on the command line);
2. ``$EMLIB_WEIGHTS/<publisher's file>`` (Meta's ``dinov2_vits14_pretrain.pth``) or
   ``$EMLIB_WEIGHTS/NAME/<a file the hub serves>`` under its own name (``model.safetensors``,
   ``open_clip_pytorch_model.bin``, ...; or the publisher's file);
3. the torch.hub checkpoint folder, ``$TORCH_HOME/hub/checkpoints/<publisher's file>`` (where
   ``torch.hub.load("facebookresearch/dinov2", ...)`` puts Meta's files);
4. the Hugging Face cache (``huggingface_hub.try_to_load_from_cache``, no network);
5. only then, online, ``huggingface_hub.hf_hub_download`` into that cache, with its progress bar:
   what timm and open_clip call themselves.

Offline (``HF_HUB_OFFLINE`` set, or the hub's endpoint not reachable by a socket within
:data:`PROBE_SECONDS`) a missing file fails at once with one sentence naming where it looked and
the fix, in Python words (``str(err)``) and in command-line words (``err.cli_message``, printed by
``emlib``). A file under the publisher's name that carries a hash (``...-8aa4cbdd.pth``) must
have a SHA-256 starting with it. :func:`fetch_weights` downloads, :func:`weights_status` tabulates.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import torch.hub

from emlib.config import get_profile
from emlib.errors import ConfigError, WeightsError, short_reason
from emlib.models.registry import get_backbone_spec, list_backbones
from emlib.models.weights import WEIGHTS_ENV, BackboneSpec, published_hash
from emlib.runfiles import file_sha256

__all__ = [
    "WeightsSource", "WeightsMissing", "PROBE_SECONDS", "find_weights", "fetch_weights", "weights_status",
    "offline_reason", "select_backbones",
]

#: How long the probe of the hub's endpoint waits before calling the machine offline.
PROBE_SECONDS = 3.0
_HF_ORIGINS = ("hf-cache", "hf-download", "hub")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WeightsMissing(WeightsError):
    """No weights file on this machine and no way to download one; ``cli_message`` says it in CLI words."""


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights of one backbone come from (see :func:`find_weights`).

    Attributes
    ----------
    spec : BackboneSpec
    origin : {'explicit', 'EMLIB_WEIGHTS', 'torch.hub', 'hf-cache', 'hf-download', 'hub'}
        ``'hub'``: not on this machine yet, the hub is reachable and will serve it.
    path : Path or None
        The file (None for ``'hub'``).
    hub_file : str
        The hub's file name for the ``hf-*`` origins, else ``''``.
    """

    spec: BackboneSpec
    origin: str
    path: Path | None
    hub_file: str = ""

    @property
    def present(self) -> bool:
        """True when the file is on this machine."""
        return self.path is not None

    @property
    def where(self) -> str:
        """``hf:<repo>/<file>`` for hub files, else the file's path."""
        if self.origin in _HF_ORIGINS:
            return f"hf:{self.spec.hf_repo}/{self.hub_file}" if self.hub_file else f"hf:{self.spec.hf_repo}"
        return str(self.path)

    def sha256(self) -> str:
        """SHA-256 of the file (the blob name of a Hugging Face cache file, else computed once and remembered)."""
        if self.path is None:
            raise WeightsError(f"the weights of {self.spec.name} are not on this machine; fetch them first.")
        blob = self.path.resolve().name
        if self.origin in _HF_ORIGINS and _SHA256.match(blob):
            return blob
        return file_sha256(self.path)

    @property
    def fingerprint(self) -> str:
        """What a run's folder is keyed on: ``hub:<hub id>`` for the hub's files (the same before and after
        the download), ``sha256:<hex>`` for a local file."""
        if self.origin in _HF_ORIGINS:
            return f"hub:{self.spec.hub_id}"
        return f"sha256:{self.sha256()}"

    def label(self) -> str:
        """The weights label of a backbone built from this file, e.g.
        ``pretrained (lvd142m) from hf:timm/vit_small_patch14_dinov2.lvd142m/model.safetensors sha256:1a2b3c4d5e6f``."""
        return f"pretrained ({self.spec.pretrained_tag}) from {self.where} sha256:{self.sha256()[:12]}"


# --------------------------------------------------------------------------------------------
# Is the hub reachable?
# --------------------------------------------------------------------------------------------


def _hf_constants():
    from huggingface_hub import constants

    return constants


def offline_reason() -> str | None:
    """Why the Hugging Face hub cannot be used now, or None when it can.

    Offline when ``HF_HUB_OFFLINE`` is set (in the environment or in ``huggingface_hub.constants``)
    or when no socket reaches the endpoint's host within :data:`PROBE_SECONDS` (remembered for the
    process). With a proxy configured (``HTTPS_PROXY``) no probe is made.
    """
    constants = _hf_constants()
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    return _probe(constants.ENDPOINT)


@functools.lru_cache(maxsize=8)
def _probe(endpoint: str) -> str | None:
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err)

    thread = threading.Thread(target=connect, daemon=True)  # name resolution ignores socket timeouts
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    if not outcome:
        return f"{host} did not answer within {PROBE_SECONDS:g} s"
    return None if outcome[0] is None else f"{host} cannot be reached"


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def _local_candidates(spec: BackboneSpec) -> list[tuple[str, Path]]:
    """``(origin, path)`` of every local place, in order (whether or not a file is there)."""
    out: list[tuple[str, Path]] = []
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        folder = Path(env).expanduser()
        if spec.weights_filename:
            out.append((WEIGHTS_ENV, folder / spec.weights_filename))
        out += [(WEIGHTS_ENV, folder / spec.name / f) for f in (*spec.hub_files, spec.weights_filename) if f]
    if spec.weights_filename:
        out.append(("torch.hub", Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_filename))
    return out


def _hf_cached(spec: BackboneSpec) -> tuple[str, Path] | None:
    """``(hub file, path)`` of the first hub file in the Hugging Face cache, or None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for name in spec.hub_files:
        found = try_to_load_from_cache(spec.hf_repo, name)
        if isinstance(found, str) and Path(found).is_file():
            return name, Path(found)
    return None


def _looked(spec: BackboneSpec) -> str:
    """The places :func:`find_weights` looked in, for messages (the files under ``$EMLIB_WEIGHTS/NAME`` in braces)."""
    env = os.environ.get(WEIGHTS_ENV)
    places = [] if env else [f"${WEIGHTS_ENV} (not set)"]
    folder = Path(env or ".").expanduser() / spec.name
    in_folder = [p.name for o, p in _local_candidates(spec) if o == WEIGHTS_ENV and p.parent == folder]
    for origin, path in _local_candidates(spec):
        if origin == WEIGHTS_ENV and path.parent == folder:
            if path.name == in_folder[0]:
                places.append(f"{folder}/{{{','.join(in_folder)}}}")
        else:
            places.append(str(path))
    if spec.hf_repo:
        places.append(f"the Hugging Face cache {_hf_constants().HF_HUB_CACHE} ({spec.hf_repo})")
    return ", ".join(places)


def _missing(spec: BackboneSpec, reason: str) -> WeightsMissing:
    head = f"no pretrained weights for {spec.name} on this machine (looked in {_looked(spec)}) and the hub cannot be used ({reason})"
    return WeightsMissing(
        f"{head}; run emlib.fetch_weights(['{spec.name}']) where there is internet, pass weights=PATH, "
        "or use pretrained=False for random weights (tests only).",
        why=head,
        cli_message=f"{head}; run `emlib weights fetch {spec.name}` where there is internet, pass `--weights {spec.name}=FILE`, "
        "or use `--random-weights` (tests only).",
    )


def _checked(source: WeightsSource) -> WeightsSource:
    """``source``, after checking a publisher-named file against the hash its name carries."""
    expected = published_hash(source.spec, source.path.name) if source.path is not None else ""
    if expected and not source.sha256().startswith(expected):
        raise WeightsError(
            f"{source.path} is not the published file {source.spec.weights_filename} (its SHA-256 starts with "
            f"{source.sha256()[:len(expected)]}, not {expected}); download it again from {source.spec.weights_url} "
            "or rename it if it is another checkpoint."
        )
    return source


def find_weights(
    name: str, weights: str | os.PathLike[str] | None = None, *, download: bool = False, progress: bool = True,
) -> WeightsSource:
    """The weights file backbone ``name`` loads with ``pretrained=True`` (see the module docstring for the order).

    Parameters
    ----------
    name : str
        A registered backbone.
    weights : path-like, default=None
        An explicit file, used before anything else; it must exist.
    download : bool, default=False
        When no file is on this machine and the hub is reachable: download it (True) or return a
        source with ``origin='hub'`` and no path (False, what the run fingerprints use).
    progress : bool, default=True
        The download's progress bar.

    Returns
    -------
    WeightsSource

    Raises
    ------
    WeightsMissing
        Nothing on this machine and the hub cannot be used (offline): one sentence, in seconds.
    WeightsError
        The explicit file does not exist, a publisher-named file has another hash, or the download failed.

    Examples
    --------
    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     torch.save({"w": torch.zeros(1)}, f"{d}/mine.pth")
    ...     find_weights("dinov2_vits14", f"{d}/mine.pth").origin
    'explicit'
    """
    spec = get_backbone_spec(name)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsMissing(
                f"weights file {path} for {name} does not exist; check the path, or leave weights=None to use "
                f"${WEIGHTS_ENV} and the hubs.",
                why=f"weights file {path} for {name} does not exist",
                cli_message=f"weights file {path} for {name} does not exist; check the path given to --weights {name}=FILE.",
            )
        return _checked(WeightsSource(spec, "explicit", path))
    for origin, path in _local_candidates(spec):
        if path.is_file():
            return _checked(WeightsSource(spec, origin, path))
    if spec.hf_repo:
        cached = _hf_cached(spec)
        if cached is not None:
            return WeightsSource(spec, "hf-cache", cached[1], cached[0])
    reason = offline_reason() if spec.hf_repo else "no hub repo is registered for it"
    if reason:
        raise _missing(spec, reason)
    if not download:
        return WeightsSource(spec, "hub", None)
    return _download(spec, progress=progress)


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def _download(spec: BackboneSpec, *, progress: bool) -> WeightsSource:
    """``hf_hub_download`` of the first file ``spec.hf_repo`` serves, as timm / open_clip do."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    login = (f"accept the {spec.license} terms on {spec.license_url or 'https://huggingface.co/' + spec.hf_repo} "
             "with your Hugging Face account, then log in (`hf auth login`, or set HF_TOKEN) and run it again")
    last: BaseException | None = None
    with _progress_bars(progress):
        for name in spec.hub_files:
            try:
                path = hf_hub_download(spec.hf_repo, name)
            except EntryNotFoundError as err:  # the repo serves the next file name instead
                last = err
                continue
            except (GatedRepoError, RepositoryNotFoundError) as err:  # 401/403/404: gated or private
                raise WeightsError(f"the download of {spec.hf_repo} for {spec.name} was refused "
                                   f"({short_reason(err)}); {login}.") from err
            except Exception as err:  # noqa: BLE001 - connection dropped, disk full, ...
                raise WeightsError(f"the download of {name} from {spec.hf_repo} for {spec.name} failed ({short_reason(err)}); "
                                   "check the connection and the free space, and run it again (finished files are kept).") from err
            return WeightsSource(spec, "hf-download", Path(path), name)
    raise WeightsError(f"{spec.hf_repo} serves none of {list(spec.hub_files)} ({short_reason(last)}); "
                       f"download {spec.weights_url or spec.hf_repo} by hand and pass it as a weights file.")


# --------------------------------------------------------------------------------------------
# Many backbones: selection, fetching, status
# --------------------------------------------------------------------------------------------


def select_backbones(names: str | Sequence[str] | None = None, *, profile: str | None = None) -> list[str]:
    """Backbone names from ``names`` and/or the backbones of ``profile``, in order, each once; every registered one when neither is given.

    Examples
    --------
    >>> select_backbones(profile="smoke")
    ['dinov2_vits14']
    """
    chosen = [names] if isinstance(names, str) else list(names or ())
    if profile is not None:
        chosen += list(get_profile(profile).backbones)
    if not chosen and profile is None:
        chosen = list_backbones()
    for name in chosen:
        get_backbone_spec(name)  # an unknown name is one sentence
    return list(dict.fromkeys(chosen))


def fetch_weights(
    names: str | Sequence[str] | None = None, *, profile: str | None = None, progress: bool = True,
) -> dict[str, WeightsSource]:
    """Make sure the weights of these backbones are on this machine, downloading what is missing.

    Downloads go through ``huggingface_hub.hf_hub_download`` into the Hugging Face cache (the one
    timm and open_clip read), with its progress bars; files already present anywhere
    :func:`find_weights` looks are left alone.

    Parameters
    ----------
    names : str or sequence of str, default=None
        Backbones; with ``profile`` the profile's are added. At least one of the two is needed.
    profile : str, default=None
    progress : bool, default=True

    Returns
    -------
    dict of str to WeightsSource

    Raises
    ------
    WeightsMissing
        Offline (in seconds, before any download).
    """
    if names is None and profile is None:
        raise ConfigError("fetch_weights needs backbones or a profile, e.g. fetch_weights(['dinov2_vits14']) or "
                          "fetch_weights(profile='quick').")
    chosen = select_backbones(names, profile=profile)
    missing = []
    for name in chosen:  # offline: one sentence before any download
        try:
            find_weights(name)
        except WeightsMissing:
            missing.append(name)
    if missing:
        cache, listed = _hf_constants().HF_HUB_CACHE, " ".join(missing)
        head = f"cannot download the weights of {', '.join(missing)}: the hub cannot be used ({offline_reason()})"
        raise WeightsMissing(
            f"{head}; run emlib.fetch_weights({missing!r}) on a machine with internet, then copy its Hugging Face "
            f"cache into {cache} here, or pass the files as weights=PATH.",
            why=head,
            cli_message=f"{head}; run `emlib weights fetch {listed}` on a machine with internet, then copy its Hugging Face cache "
            f"into {cache} here, or give the files to `emlib grid` as --weights NAME=FILE.",
        )
    return {name: find_weights(name, download=True, progress=progress) for name in chosen}


def _status_row(name: str, weights: str | os.PathLike[str] | None) -> dict[str, object]:
    spec = get_backbone_spec(name)
    try:
        source = find_weights(name, weights)
        present, where = source.present, source.where if source.present else "on the hub (not downloaded)"
    except WeightsError as err:
        present, where = False, "missing" if isinstance(err, WeightsMissing) else f"unusable: {err}"
    return {
        "backbone": name, "hub_repo": spec.hf_repo, "files": ", ".join(f for f in (*spec.hub_files, spec.weights_filename) if f),
        "about": f"about {spec.size_mb / 1000:.1f} GB" if spec.size_mb >= 1000 else f"about {spec.size_mb} MB",
        "sha256": spec.sha256 or "-", "licence": spec.license + (" (gated)" if spec.gated else ""),
        "present": present, "where": where,
    }


def weights_status(
    names: str | Sequence[str] | None = None, *, profile: str | None = None,
    weights: Mapping[str, str | os.PathLike[str]] | None = None,
) -> pd.DataFrame:
    """One row per backbone: what its weights are, and whether (and where) they are on this machine.

    Parameters
    ----------
    names, profile
        As :func:`select_backbones` (every registered backbone when neither is given).
    weights : mapping of str to path, default=None
        Explicit files per backbone.

    Returns
    -------
    pandas.DataFrame
        Columns ``backbone, hub_repo, files, about, sha256, licence, present, where``; ``files`` are
        the hub's names in the order tried, then the publisher's own; nothing is downloaded.
    """
    weights = dict(weights or {})
    return pd.DataFrame([_status_row(name, weights.get(name)) for name in select_backbones(names, profile=profile)])
