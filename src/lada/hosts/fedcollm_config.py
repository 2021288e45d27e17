"""FedCoLLM's settings, ``hosts.fedcollm`` (a light module: read by config checks without
torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from lada.hosts.vocabulary import vocabulary_problems
from lada.utils.rules import ge, gt, one_of, setting, within

AGGREGATES = ("mean", "median", "trimmed_mean")


@dataclass(frozen=True)
class FedCoLLMConfig:
    """FedCoLLM: FedAvg of the SLMs, then server-side LM + kl_weight·KL over top-k logits."""

    top_k: int = setting(128, ge(1))  # teacher logits kept per token; clipped to the vocabulary
    kl_weight: float = setting(1.0, ge(0))  # LM + 1.0·KL over top-k [FedCoLLM]
    # the FedAvg step (ours, lada.hosts.fedavg.robust_fedavg): "mean" weighted by the clients'
    # sample counts [FedCoLLM], or the coordinate-wise "median" / "trimmed_mean" (one client's
    # weights cannot move them far)
    aggregate: Literal["mean", "median", "trimmed_mean"] = setting(
        "mean", one_of(lambda: AGGREGATES, "aggregate")
    )
    trim: float = setting(0.2, within(0, 0.5, hi_open=True))  # trimmed_mean: cut at each end
    # a client's num_samples counts at most this many times the smallest client's (None: as sent)
    max_sample_ratio: float | None = setting(10.0, ge(1, none_ok=True))
    # L2 norm a client's update (its weights minus those the server sent) is clipped to (None: off)
    max_update_norm: float | None = setting(None, gt(0, none_ok=True))

    # old keys still read (with a one-line notice): old dotted key -> this section's field
    renamed: ClassVar[dict[str, str]] = {
        "distill.top_k": "top_k",
        "distill.fedcollm_kl_weight": "kl_weight",
        "distill.fedcollm_aggregate": "aggregate",
        "distill.fedcollm_trim": "trim",
        "distill.fedcollm_max_sample_ratio": "max_sample_ratio",
        "distill.fedcollm_max_update_norm": "max_update_norm",
    }

    @staticmethod
    def run_problems(cfg: Any) -> list[tuple[str, Any, str]]:
        """What this host cannot run in a whole run config: (key, value, what is wrong)."""
        out = vocabulary_problems(cfg)
        first = cfg.clients[0] if cfg.clients else None
        for k, c in enumerate(cfg.clients[1:], start=1):
            if (c.model, c.gguf_file, repr(c.lora)) != (
                first.model,
                first.gguf_file,
                repr(first.lora),
            ):
                what = "model" if c.model != first.model else "gguf_file/lora"
                out.append(
                    (
                        f"clients.{k}.{'model' if what == 'model' else 'lora'}",
                        c.model if what == "model" else repr(c.lora),
                        "host fedcollm averages SLM weights (FedAvg) and needs homogeneous SLMs: "
                        f"every client must hold clients.0's model ({first.model}, same "
                        "gguf_file and lora); use host sft or fedcot for heterogeneous SLMs",
                    )
                )
                break
        return out


__all__ = ["FedCoLLMConfig"]
