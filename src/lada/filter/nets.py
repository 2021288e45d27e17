"""The two small networks of an EE-Net-style filter (spec §3) and their regression training.

* :class:`ExploitNet` f1(x): MLP with ``num_layers`` linear layers, ReLU between them and a
  sigmoid output, so the predicted reward lies in (0, 1) like r_i (the sigmoid is ours).
* :class:`ExploreNet` f2(phi): MLP of the same shape with a linear output; it fits the
  residual r - f1(x), so it may be negative.

phi is, as in EE-Net, the gradient of f1's output w.r.t. its parameters: by default only the
output layer's (hidden + 1 values, :meth:`ExploitNet.output_gradient`), or those of the last
L linear layers (:meth:`ExploitNet.param_gradient`); or f1's last hidden layer (spec [default]).
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

    def linear_layers(self, n_layers: int) -> list[nn.Linear]:
        """The last ``n_layers`` linear layers, output layer first (0: all of them)."""
        linears = [self.head] + [m for m in reversed(self.body) if isinstance(m, nn.Linear)]
        return linears if n_layers == 0 else linears[:n_layers]

    def param_gradient(self, x: torch.Tensor, n_layers: int) -> torch.Tensor:
        """d f1(x) / d(weights and biases of the last ``n_layers`` linear layers) per sample,
        shape [N, their parameter count] (0: all of f1's parameters, EE-Net's input)."""
        if n_layers == 1:
            return self.output_gradient(x)
        from torch.func import functional_call, grad, vmap

        name = {id(p): n for n, p in self.named_parameters()}
        # output layer first, then inwards (weight, bias each), as output_gradient orders them
        params = {
            name[id(p)]: p.detach() for m in self.linear_layers(n_layers) for p in m.parameters()
        }

        def f1_of(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
            return functional_call(self, p, (xi.unsqueeze(0),), strict=False).squeeze(0)

        grads = vmap(grad(f1_of), in_dims=(None, 0))(params, x)
        return torch.cat([grads[n].reshape(x.shape[0], -1) for n in params], dim=1)

    def explore_features(
        self, x: torch.Tensor, kind: ExploreInput, grad_layers: int = 1
    ) -> torch.Tensor:
        """phi(x) for f2, detached from f1's graph."""
        if kind == "hidden":
            with torch.no_grad():
                return self.forward_with_hidden(x)[1]
        if kind == "gradient":
            if grad_layers == 1:
                with torch.no_grad():
                    return self.output_gradient(x)
            return self.param_gradient(x, grad_layers).detach()
        raise ValueError(f"unknown explore input {kind!r}")


def explore_dim(in_dim: int, hidden: int, num_layers: int, kind: ExploreInput, layers: int) -> int:
    """Dimension of phi for an ExploitNet(in_dim, hidden, num_layers)."""
    if kind == "hidden":
        return hidden
    sizes = (
        [hidden + 1] + [hidden * hidden + hidden] * (num_layers - 2) + [in_dim * hidden + hidden]
    )
    return sum(sizes if layers == 0 else sizes[:layers])


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
    in_dim: int,
    hidden: int,
    num_layers: int,
    explore_input: ExploreInput,
    seed: int,
    grad_layers: int = 1,
    max_dim: int | None = None,
) -> tuple[ExploitNet, ExploreNet]:
    """Build f1 and f2 with a seeded init that leaves the global torch RNG untouched."""
    phi_dim = explore_dim(in_dim, hidden, num_layers, explore_input, grad_layers)
    if max_dim is not None and phi_dim > max_dim:
        raise ValueError(
            f"filter.explore_grad_layers={grad_layers} gives a phi of {phi_dim} values, over "
            f"filter.explore_max_dim={max_dim}; use fewer layers or raise the limit"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        f1 = ExploitNet(in_dim, hidden, num_layers)
        f2 = ExploreNet(phi_dim, hidden, num_layers)
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
