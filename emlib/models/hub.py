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

Offline (``HF_HUB_OFFLINE`` set, or the hub's endpoint, or the proxy in ``HTTPS_PROXY`` /
``ALL_PROXY``, not answering within :data:`PROBE_SECONDS`: a connection that is accepted but
never answered counts as none) a missing file fails at once with one sentence naming where it
looked and the fix, in Python words (``str(err)``) and in command-line words (``err.cli_message``,
printed by ``emlib``). Downloads have a connect-and-read timeout (:data:`DOWNLOAD_SECONDS`), and a
stalled network is one sentence that blames the network.

What is found is checked before it is used: ``$EMLIB_WEIGHTS`` must be a folder, a path must be a
regular file (:func:`~emlib.models.weights.weights_file_problem`), a zip archive must not declare
more than the backbone can need (:func:`~emlib.models.weights.check_archive`), a file under the
publisher's name that carries a hash (``...-8aa4cbdd.pth``) must have a SHA-256 starting with it,
and a Hugging Face cache blob, named by the SHA-256 of its content, must have that SHA-256. The
SHA-256 in a weights label is the file's own, computed once per file and remembered across
processes by (path, size, mtime_ns, inode) (:func:`~emlib.models.weightfile.weights_sha256`). :func:`fetch_weights`
downloads, :func:`weights_status` tabulates.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch.hub

from emlib.config import get_profile
from emlib.errors import ConfigError, WeightsError, short_reason
from emlib.models.network import network_failure, probe, proxy_for, proxy_variable
from emlib.models.registry import get_backbone_spec, list_backbones
from emlib.models.weightfile import check_archive, weights_file_problem, weights_sha256
from emlib.models.weights import WEIGHTS_ENV, BackboneSpec, archive_limit, published_hash
from emlib.paths import env_path

__all__ = [
    "WeightsSource", "WeightsMissing", "PROBE_SECONDS", "find_weights", "fetch_weights", "weights_status",
    "offline_reason", "select_backbones",
]

#: How long the probe of the hub's endpoint (or proxy) waits to connect, and again for an answer, before calling the machine offline.
PROBE_SECONDS = 3.0
#: Connect-and-read timeout of each request of a download.
DOWNLOAD_SECONDS = 10.0
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
        """SHA-256 of the file's content (:func:`~emlib.models.weightfile.weights_sha256`: computed once per file)."""
        if self.path is None:
            raise WeightsError(f"the weights of {self.spec.name} are not on this machine; fetch them first.")
        return weights_sha256(self.path)

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
    or when the endpoint does not answer within :data:`PROBE_SECONDS` to connect and again to answer
    (remembered for the process): no socket reaches it, or one is accepted and never answered (a TLS
    handshake for ``https``, a ``HEAD /`` for ``http``). With a proxy for the endpoint
    (``HTTPS_PROXY``, ``ALL_PROXY``; ``NO_PROXY`` honoured) the proxy is probed instead: it must
    answer a ``CONNECT`` to the endpoint.
    """
    constants = _hf_constants()
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return "HF_HUB_OFFLINE is set"
    return _probe(constants.ENDPOINT, proxy_for(constants.ENDPOINT))


@functools.lru_cache(maxsize=8)
def _probe(endpoint: str, proxy: str = "") -> str | None:
    return probe(endpoint, proxy, timeout=PROBE_SECONDS)  # remembered for the process


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def _weights_folder() -> Path | None:
    """``$EMLIB_WEIGHTS`` as a folder, None when unset; anything but a folder is one sentence, never ignored."""
    folder = env_path(WEIGHTS_ENV)
    if folder is None:
        return None
    env = str(folder)
    try:
        mode = folder.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        return folder
    if mode is not None and stat.S_ISREG(mode):
        head = f"{WEIGHTS_ENV}={env} is a file, not the folder of weights files it must name"
        python_fix, cli_fix = "pass the file as weights=PATH", "give the file as `--weights NAME=FILE`"
        fix = f"set {WEIGHTS_ENV} to the folder that holds it ({folder.parent}), or "
        raise WeightsError(f"{head}; {fix}{python_fix}.", why=head, cli_message=f"{head}; {fix}{cli_fix}.")
    problem = weights_file_problem(folder) if mode is None else "is not a folder"
    head = f"{WEIGHTS_ENV}={env} {problem}, so it names no folder of weights files"
    raise WeightsError(f"{head}; fix the path, create the folder and put the weights files there, or unset {WEIGHTS_ENV} "
                       "to use the hubs' caches.", why=head)


def _local_candidates(spec: BackboneSpec) -> list[tuple[str, Path]]:
    """``(origin, path)`` of every local place, in order (whether or not a file is there)."""
    out: list[tuple[str, Path]] = []
    folder = _weights_folder()
    if folder is not None:
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
        if isinstance(found, str) and os.path.lexists(found):
            return name, Path(found)  # a snapshot link that is not a file is refused by _checked, never skipped
    return None


def _looked(spec: BackboneSpec) -> str:
    """The places :func:`find_weights` looked in, for messages (the files under ``$EMLIB_WEIGHTS/NAME`` in braces)."""
    env = env_path(WEIGHTS_ENV)
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


def _proxy_fix(reason: str) -> str:
    """The start of a fix when ``reason`` (of :func:`offline_reason`) blames a proxy, else ``''``."""
    if not reason.startswith("the proxy "):
        return ""
    variable = reason.partition(" set in ")[2].partition(" ")[0]
    return f"fix the proxy in {variable} (or unset it), or "


def _missing(spec: BackboneSpec, reason: str) -> WeightsMissing:
    head = f"no pretrained weights for {spec.name} on this machine (looked in {_looked(spec)}) and the hub cannot be used ({reason})"
    fix = _proxy_fix(reason)
    return WeightsMissing(
        f"{head}; {fix}run emlib.fetch_weights(['{spec.name}']) where there is internet, pass weights=PATH, "
        "or use pretrained=False for random weights (tests only).",
        why=head,
        cli_message=f"{head}; {fix}run `emlib weights fetch {spec.name}` where there is internet, pass "
        f"`--weights {spec.name}=FILE`, or use `--random-weights` (tests only).",
    )


def _refetch(spec: BackboneSpec, head: str, remove: str) -> WeightsError:
    return WeightsError(
        f"{head}; delete {remove} and run emlib.fetch_weights(['{spec.name}']) (or copy the file again from a machine "
        "with internet).", why=head,
        cli_message=f"{head}; delete {remove} and run `emlib weights fetch {spec.name}` (or copy the file again from a "
        "machine with internet).",
    )


def _checked(source: WeightsSource) -> WeightsSource:
    """``source``, after checking that it is a regular file, an archive of a possible size, a publisher-named
    file against the hash its name carries, and a Hugging Face cache blob against the SHA-256 it is named by."""
    spec, path = source.spec, source.path
    if path is None:
        return source
    problem = weights_file_problem(path)
    if problem:
        where = {"hf-cache": " in the Hugging Face cache", "hf-download": " in the Hugging Face cache",
                 WEIGHTS_ENV: f" in ${WEIGHTS_ENV}", "torch.hub": " in the torch.hub checkpoint folder"}.get(source.origin, "")
        head = f"the weights file {path} of {spec.name}{where} {problem}"
        if source.origin in _HF_ORIGINS:
            raise _refetch(spec, head, path)
        raise WeightsError(f"{head}; put the weights file itself there or remove that entry.", why=head)
    check_archive(path, archive_limit(spec), backbone=spec.name)  # a zip bomb: refused from its declared sizes, before anything is inflated
    expected = published_hash(spec, path.name)
    if expected and not source.sha256().startswith(expected):
        raise WeightsError(
            f"{path} is not the published file {spec.weights_filename} (its SHA-256 starts with "
            f"{source.sha256()[:len(expected)]}, not {expected}); download it again from {spec.weights_url} "
            "or rename it if it is another checkpoint."
        )
    blob = path.resolve()
    if source.origin in _HF_ORIGINS and _SHA256.match(blob.name) and source.sha256() != blob.name:
        head = (f"the Hugging Face cache file {path} of {spec.name} is damaged or was replaced (its SHA-256 is "
                f"{source.sha256()[:12]}..., not the {blob.name[:12]}... of the hub's file it is named by)")
        raise _refetch(spec, head, f"{blob} and {path}" if blob != path else str(path))
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
        The explicit file does not exist or is not a regular file (a folder, a FIFO, a broken link),
        ``$EMLIB_WEIGHTS`` is not a folder, a zip archive declares more than the backbone can need, a
        publisher-named file has another hash, a Hugging Face cache blob is not the file its name
        promises, or the download failed (a stalled network: within :data:`DOWNLOAD_SECONDS`).

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
        problem = weights_file_problem(path)
        if problem == "does not exist":
            raise WeightsMissing(
                f"weights file {path} for {name} does not exist; check the path, or leave weights=None to use "
                f"${WEIGHTS_ENV} and the hubs.",
                why=f"weights file {path} for {name} does not exist",
                cli_message=f"weights file {path} for {name} does not exist; check the path given to --weights {name}=FILE.",
            )
        if problem:
            head = f"weights file {path} for {name} {problem}"
            inside = next((f for f in (*spec.hub_files, spec.weights_filename) if f and (path / f).is_file()), "")
            example = f" (e.g. {path / inside})" if inside else ""
            raise WeightsError(f"{head}; pass the weights file itself as weights=PATH{example}.", why=head,
                               cli_message=f"{head}; give the weights file itself to --weights {name}=FILE{example}.")
        return _checked(WeightsSource(spec, "explicit", path))
    for origin, path in _local_candidates(spec):
        if os.path.lexists(path):  # anything there but a readable file is one sentence, never skipped for another copy
            return _checked(WeightsSource(spec, origin, path))
    if spec.hf_repo:
        cached = _hf_cached(spec)
        if cached is not None:
            return _checked(WeightsSource(spec, "hf-cache", cached[1], cached[0]))
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


@contextlib.contextmanager
def _download_timeout() -> Iterator[None]:
    """``huggingface_hub``'s read timeout of downloads (``HF_HUB_DOWNLOAD_TIMEOUT``) at most :data:`DOWNLOAD_SECONDS`."""
    constants = _hf_constants()
    saved = constants.HF_HUB_DOWNLOAD_TIMEOUT
    constants.HF_HUB_DOWNLOAD_TIMEOUT = min(saved, DOWNLOAD_SECONDS)
    try:
        yield
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = saved


def _network_error(spec: BackboneSpec, name: str, cause: BaseException) -> WeightsError:
    proxy = proxy_for(_hf_constants().ENDPOINT)
    via = f" through the proxy {proxy} set in {proxy_variable('https')}" if proxy else ""
    head = (f"the network failed while downloading {name} from {spec.hf_repo} for {spec.name}{via} "
            f"({short_reason(cause)}, after at most {DOWNLOAD_SECONDS:g} s without an answer)")
    fix = "check the connection" + (" and the proxy" if proxy else "") + ", and run it again (finished files are kept)"
    return WeightsError(f"{head}; {fix}.", why=head)


def _download(spec: BackboneSpec, *, progress: bool) -> WeightsSource:
    """``hf_hub_download`` of the first file ``spec.hf_repo`` serves, as timm / open_clip do.

    Each file's metadata is asked for first with a connect-and-read timeout of :data:`DOWNLOAD_SECONDS`
    and no retries, so a stalled network is one sentence in seconds; the download reads with the same timeout.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.utils import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    login = (f"accept the {spec.license} terms on {spec.license_url or 'https://huggingface.co/' + spec.hf_repo} "
             "with your Hugging Face account, then log in (`hf auth login`, or set HF_TOKEN) and run it again")
    last: BaseException | None = None
    with _progress_bars(progress), _download_timeout():
        for name in spec.hub_files:
            try:
                get_hf_file_metadata(hf_hub_url(spec.hf_repo, name), timeout=DOWNLOAD_SECONDS)
                path = hf_hub_download(spec.hf_repo, name, etag_timeout=DOWNLOAD_SECONDS)
            except EntryNotFoundError as err:  # the repo serves the next file name instead
                last = err
                continue
            except (GatedRepoError, RepositoryNotFoundError) as err:  # 401/403/404: gated or private
                raise WeightsError(f"the download of {spec.hf_repo} for {spec.name} was refused "
                                   f"({short_reason(err)}); {login}.") from err
            except Exception as err:  # noqa: BLE001 - connection dropped, disk full, ...
                cause = network_failure(err)
                if cause is not None:
                    raise _network_error(spec, name, cause) from err
                raise WeightsError(f"the download of {name} from {spec.hf_repo} for {spec.name} failed ({short_reason(err)}); "
                                   "check the connection and the free space, and run it again (finished files are kept).") from err
            return _checked(WeightsSource(spec, "hf-download", Path(path), name))
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
        reason = offline_reason() or ""
        head, fix = f"cannot download the weights of {', '.join(missing)}: the hub cannot be used ({reason})", _proxy_fix(reason)
        raise WeightsMissing(
            f"{head}; {fix}run emlib.fetch_weights({missing!r}) on a machine with internet, then copy its Hugging Face "
            f"cache into {cache} here, or pass the files as weights=PATH.",
            why=head,
            cli_message=f"{head}; {fix}run `emlib weights fetch {listed}` on a machine with internet, then copy its Hugging Face "
            f"cache into {cache} here, or give the files to `emlib grid` as --weights NAME=FILE.",
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
