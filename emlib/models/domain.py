"""Feature-level remedies for paired training: modules between the backbone and the head.

* :class:`DomainFeatureNorm` -- per-domain standardisation of patch features with AdaBN-style
  running statistics (``feature_norm``);
* :class:`DomainFiLM` -- a learned per-domain affine map (``film``);
* :class:`DomainAwareHead` -- the above before one shared head, or one head per domain
  (``heads_per_domain``); :class:`DomainSegmentationModel` puts it behind a backbone;
* :class:`CoralProbe` -- captures the features CORAL aligns during a forward pass
  (``coral_weight``; the loss itself is :func:`emlib.losses.coral_loss`).

Domain ids are positions in :data:`DOMAINS`: 0 for Lucchi++, 1 for VNC, in training (the item's
``domain``) and at test time (the test set's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emlib.config import TEST_SETS
from emlib.errors import ConfigError, ShapeError
from emlib.losses import coral_loss, domain_ids, patch_features

__all__ = [
    "DOMAINS",
    "domain_index",
    "DomainFeatureNorm",
    "DomainFiLM",
    "DomainAwareHead",
    "DomainSegmentationModel",
    "CoralProbe",
    "running_stat_names",
]

#: Domain id of each dataset (position), shared by training items and test sets.
DOMAINS: tuple[str, ...] = TEST_SETS


def domain_index(dataset: str) -> int:
    """Domain id of a dataset: its position in :data:`DOMAINS` (lucchi_pp 0, vnc 1)."""
    if dataset not in DOMAINS:
        raise ConfigError(f"dataset={dataset!r} has no domain id; choose one of {list(DOMAINS)}")
    return DOMAINS.index(dataset)


def _check_map(x: torch.Tensor, channels: int, owner: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ShapeError(f"{owner} expects features of shape (B, {channels}, h, w), got {tuple(x.shape)}")


class DomainFeatureNorm(nn.Module):
    """Per-domain standardisation of patch features, with AdaBN-style running statistics.

    Each domain has its own running mean and variance per channel. In training, a batch is
    normalised with the batch statistics of each domain's items, and only the running statistics
    of the domains present are updated. In evaluation the running statistics of the given domain
    are used; a domain never seen in training is normalised with its own batch statistics (AdaBN:
    the test domain's statistics replace the training ones). No affine parameters: the head's
    first layer follows.

    Parameters
    ----------
    num_domains : int
    channels : int
    momentum : float, default=0.1
        As in :class:`torch.nn.BatchNorm2d`.
    eps : float, default=1e-5

    Examples
    --------
    >>> norm = DomainFeatureNorm(2, 4)
    >>> norm(torch.randn(3, 4, 2, 2) * 5 + 1, torch.tensor([0, 0, 1])).shape
    torch.Size([3, 4, 2, 2])
    """

    def __init__(self, num_domains: int, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_domains, self.channels, self.momentum, self.eps = num_domains, channels, momentum, eps
        self.register_buffer("running_mean", torch.zeros(num_domains, channels))
        self.register_buffer("running_var", torch.ones(num_domains, channels))
        self.register_buffer("num_batches_tracked", torch.zeros(num_domains, dtype=torch.long))

    def forward(self, x: torch.Tensor, domain: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Normalised features, same shape as ``x`` (B, C, h, w); ``domain`` is an int or (B,) ids."""
        _check_map(x, self.channels, "DomainFeatureNorm")
        d = domain_ids(domain, x.shape[0], self.num_domains, x.device)
        out = torch.zeros_like(x, dtype=torch.float32)
        for k in d.unique().tolist():
            idx = (d == k).nonzero(as_tuple=True)[0]
            xk = x[idx].float()
            if self.training or int(self.num_batches_tracked[k]) == 0:
                mean = xk.mean(dim=(0, 2, 3))
                var = xk.var(dim=(0, 2, 3), unbiased=False)
                if self.training:
                    with torch.no_grad():
                        n = xk.numel() / self.channels
                        unbiased = var * n / max(n - 1, 1)
                        self.running_mean[k].lerp_(mean.detach(), self.momentum)
                        self.running_var[k].lerp_(unbiased.detach(), self.momentum)
                        self.num_batches_tracked[k] += 1
            else:
                mean, var = self.running_mean[k], self.running_var[k]
            normed = (xk - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
            out = out.index_put((idx,), normed)
        return out.to(x.dtype)


class DomainFiLM(nn.Module):
    """A learned per-domain affine map of the features: ``gamma[d] * x + beta[d]`` per channel.

    Starts as the identity (gamma 1, beta 0), so an untrained domain passes features unchanged.

    Examples
    --------
    >>> film = DomainFiLM(2, 3)
    >>> x = torch.randn(2, 3, 4, 4)
    >>> torch.equal(film(x, 1), x)
    True
    """

    def __init__(self, num_domains: int, channels: int) -> None:
        super().__init__()
        self.num_domains, self.channels = num_domains, channels
        self.gamma = nn.Parameter(torch.ones(num_domains, channels))
        self.beta = nn.Parameter(torch.zeros(num_domains, channels))

    def forward(self, x: torch.Tensor, domain: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, h, w) scaled and shifted by its domain's parameters."""
        _check_map(x, self.channels, "DomainFiLM")
        d = domain_ids(domain, x.shape[0], self.num_domains, x.device)
        return x * self.gamma[d][:, :, None, None] + self.beta[d][:, :, None, None]


class DomainAwareHead(nn.Module):
    """Head input -> [DomainFeatureNorm] -> [DomainFiLM] -> one shared head, or one head per domain.

    Called as ``head(features, out_size, domain)``; items are routed to ``heads[domain]`` when
    there is one head per domain.

    Parameters
    ----------
    heads : sequence of nn.Module
        One head (shared) or ``num_domains`` heads, each called as ``head(features, out_size)``.
    num_domains : int
    channels : int
        Channels of the features (the backbone's ``embed_dim``).
    feature_norm, film : bool, default=False
        Insert :class:`DomainFeatureNorm` / :class:`DomainFiLM` before the head(s).
    """

    def __init__(
        self, heads: Sequence[nn.Module], *, num_domains: int, channels: int, feature_norm: bool = False, film: bool = False
    ) -> None:
        super().__init__()
        if len(heads) not in (1, num_domains):
            raise ConfigError(f"DomainAwareHead takes 1 shared head or one per domain ({num_domains}), got {len(heads)}")
        self.heads = nn.ModuleList(heads)
        self.num_domains, self.in_ch = num_domains, channels
        self.norm = DomainFeatureNorm(num_domains, channels) if feature_norm else None
        self.film = DomainFiLM(num_domains, channels) if film else None

    def adapt(self, features: torch.Tensor, domain: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The features the head(s) see: after the per-domain norm and FiLM, where present."""
        if self.norm is not None:
            features = self.norm(features, domain)
        if self.film is not None:
            features = self.film(features, domain)
        return features

    def forward(self, features: torch.Tensor, out_size: Sequence[int], domain: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes, H, W)."""
        x = self.adapt(features, domain)
        if len(self.heads) == 1:
            return self.heads[0](x, out_size)
        d = domain_ids(domain, x.shape[0], self.num_domains, x.device)
        logits: torch.Tensor | None = None
        for k in d.unique().tolist():
            idx = (d == k).nonzero(as_tuple=True)[0]
            part = self.heads[k](x[idx], out_size)
            if logits is None:
                logits = part.new_zeros((x.shape[0], *part.shape[1:]))
            logits = logits.index_put((idx,), part)
        return logits  # type: ignore[return-value]


class DomainSegmentationModel(nn.Module):
    """A backbone and a :class:`DomainAwareHead`: ``model(x, domain=d)`` gives logits at the input size.

    The domain must be given (0 for Lucchi++, 1 for VNC: :func:`domain_index`); evaluation passes
    the test set's.
    """

    def __init__(self, backbone: nn.Module, head: DomainAwareHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, domain: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_classes, H, W) for images (B, 3, H, W) of ``domain``."""
        if domain is None:
            raise ConfigError(
                "this model has per-domain parts; call model(x, domain=d) with d=0 for lucchi_pp and 1 for vnc"
            )
        return self.head(self.backbone(x), tuple(x.shape[-2:]), domain)


def running_stat_names(model: nn.Module) -> set[str]:
    """State-dict keys of the :class:`DomainFeatureNorm` statistics (buffers a checkpoint must keep)."""
    return {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if isinstance(module, DomainFeatureNorm)
        for name, _ in module.named_buffers(recurse=False)
    }


class CoralProbe:
    """Captures, during a forward pass, the features CORAL aligns, and gives the loss between domains.

    The features are the output of the shared head's stem (:class:`~emlib.models.SegHeadDeconv`:
    its first trainable layer, so CORAL also acts on a frozen backbone) or, for heads without a
    stem, the head's input.

    Parameters
    ----------
    model : SegmentationModel or DomainSegmentationModel
    """

    def __init__(self, model: nn.Module) -> None:
        head = model.head
        inner = head.heads[0] if isinstance(head, DomainAwareHead) else head
        self.features: torch.Tensor | None = None
        stem = getattr(inner, "stem", None)
        if stem is not None:
            self._handle = stem.register_forward_hook(self._keep_output)
        else:
            self._handle = inner.register_forward_pre_hook(self._keep_input)

    def _keep_output(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.features = output

    def _keep_input(self, module: nn.Module, args: tuple) -> None:
        self.features = args[0]

    def loss(self, domain: torch.Tensor) -> torch.Tensor:
        """:func:`coral_loss` between the captured features of domain 0 and domain 1 (0 if one is missing)."""
        if self.features is None:
            raise ConfigError("CoralProbe has no features yet; run the model forward first")
        a, b = (patch_features(self.features[domain.to(self.features.device) == k]) for k in (0, 1))
        if a.shape[0] < 2 or b.shape[0] < 2:
            return self.features.new_zeros((), dtype=torch.float32)
        return coral_loss(a, b)

    def remove(self) -> None:
        """Detach the hook."""
        self._handle.remove()
