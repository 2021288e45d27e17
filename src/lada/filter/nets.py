"""The two small networks of an EE-Net-style filter (spec §3) and their regression training.

* :class:`ExploitNet` f1(x): MLP with ``num_layers`` linear layers, ReLU between them and a
  sigmoid output, so the predicted reward lies in (0, 1) like r_i (the sigmoid is ours).
* :class:`ExploreNet` f2(phi): MLP of the same shape with a linear output; it fits the
  residual r - f1(x), so it may be negative.

phi is f1's last hidden layer (spec [default]) or, as in the original EE-Net, the gradient of
f1's output w.r.t. its last layer's parameters (see :meth:`ExploitNet.output_gradient`).
Everything runs on CPU in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lada.filter.config import ExploreInput


def _mlp_body(in_dim: int, hidden: int, n_linear: int) -> nn.Sequential:
    """``n_linear`` (Linear, ReLU) blocks: in_dim -> hidden -> ... -> hidden."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(n_linear):
        layers += [nn.Linear(dim, hidden), nn.ReLU()]
        dim = hidden
    return nn.Sequential(*layers)


class ExploitNet(nn.Module):
    """f1(x): predicted reward in (0, 1); exposes its last hidden layer for f2."""

    def __init__(self, in_dim: int, hidden: int = 256, num_layers: int = 4) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError("ExploitNet needs num_layers >= 2")
        self.body = _mlp_body(in_dim, hidden, num_layers - 1)
        self.head = nn.Linear(hidden, 1)

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f1(x) of shape [N], last hidden layer of shape [N, hidden])."""
        h = self.body(x)
        return torch.sigmoid(self.head(h)).squeeze(-1), h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(x)[0]

    def output_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """d f1(x) / d(head.weight, head.bias) per sample, shape [N, hidden + 1].

        With f1 = sigma(w.h + b): df1/dw = s(1 - s) h and df1/db = s(1 - s), s = f1(x)
        (closed form of the per-sample gradient; not normalised, ours).
        """
        s, h = self.forward_with_hidden(x)
        ds = (s * (1.0 - s)).unsqueeze(-1)
        return torch.cat([ds * h, ds], dim=-1)

    def explore_features(self, x: torch.Tensor, kind: ExploreInput) -> torch.Tensor:
        """phi(x) for f2, detached from f1's graph."""
        with torch.no_grad():
            if kind == "hidden":
                return self.forward_with_hidden(x)[1]
            if kind == "gradient":
                return self.output_gradient(x)
        raise ValueError(f"unknown explore input {kind!r}")


def explore_dim(hidden: int, kind: ExploreInput) -> int:
    """Dimension of phi for an ExploitNet of width ``hidden``."""
    return hidden if kind == "hidden" else hidden + 1


class ExploreNet(nn.Module):
    """f2(phi): linear-output MLP fitting the residual r - f1(x)."""

    def __init__(self, in_dim: int, hidden: int = 256, num_layers: int = 4) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError("ExploreNet needs num_layers >= 2")
        self.body = _mlp_body(in_dim, hidden, num_layers - 1)
        self.head = nn.Linear(hidden, 1)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(phi)).squeeze(-1)


def init_nets(
    in_dim: int, hidden: int, num_layers: int, explore_input: ExploreInput, seed: int
) -> tuple[ExploitNet, ExploreNet]:
    """Build f1 and f2 with a seeded init that leaves the global torch RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        f1 = ExploitNet(in_dim, hidden, num_layers)
        f2 = ExploreNet(explore_dim(hidden, explore_input), hidden, num_layers)
    return f1, f2


def fit_regression(
    predict: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
) -> list[float]:
    """MSE regression of ``predict(inputs)`` on ``targets``: ``epochs`` shuffled passes over all
    rows in mini-batches of ``batch_size``. Shuffling draws only from ``generator``, so the
    result is deterministic given its state. Returns the mean loss of each epoch."""
    n = inputs.shape[0]
    history: list[float] = []
    if n == 0:
        return history
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = torch.mean((predict(inputs[idx]) - targets[idx]) ** 2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        history.append(total / n)
    return history
