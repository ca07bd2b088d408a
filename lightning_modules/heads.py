"""The classification head: pool an encoder's sequence over time, then dropout and a Linear to class logits.

Every pooling reads only real steps (mask True), so padding never changes an item's logits.
"""

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from datamodules.errors import ConfigError

Pooling = Literal["last", "mean", "max", "attention"]


def real_steps(h: Tensor, mask: Tensor | None) -> Tensor:
    """The [B, T] bool mask of steps to pool (all of them without a mask); every item must keep one."""
    if mask is None:
        return torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
    if not mask.any(dim=1).all():
        # Only an encoder that pools time can do this; guessing a step would make the item's logits depend on its batch.
        raise ConfigError(
            "an item has no real step left after the encoder: a cnn with pooling needs at least "
            "pool_size**num_layers steps per item; use model.pool=none or fewer layers for short inputs"
        )
    return mask


def last_step(h: Tensor, mask: Tensor) -> Tensor:
    """The hidden state at each item's last real step (for a bidirectional rnn, its backward half has read one step)."""
    steps = torch.arange(h.shape[1], device=h.device)
    last = torch.where(mask, steps, -1).argmax(dim=1)
    return h[torch.arange(len(h), device=h.device), last]


def mean_steps(h: Tensor, mask: Tensor) -> Tensor:
    weights = mask.unsqueeze(-1).to(h.dtype)
    return (h * weights).sum(dim=1) / weights.sum(dim=1)


def max_steps(h: Tensor, mask: Tensor) -> Tensor:
    """Max over time per feature (Kim 2014's max-over-time pooling)."""
    return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


class FixedPool(nn.Module):
    """A pooling without parameters, as a module so every pooling plugs in the same way."""

    def __init__(self, pool: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return self.pool(h, mask)


class AttentionPool(nn.Module):
    """A learned score per step, softmaxed over the real steps, weights the average of the steps."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (torch.softmax(scores, dim=1).unsqueeze(-1) * h).sum(dim=1)


POOLINGS: dict[str, Callable[[int], nn.Module]] = {
    "last": lambda dim: FixedPool(last_step),
    "mean": lambda dim: FixedPool(mean_steps),
    "max": lambda dim: FixedPool(max_steps),
    "attention": AttentionPool,
}


class ClassificationHead(nn.Module):
    """(h [B, T, dim], mask [B, T] or None) -> logits [B, num_classes]."""

    def __init__(self, dim: int, num_classes: int, pooling: Pooling, dropout: float) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
        self.pool = POOLINGS[pooling](dim)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(dim, num_classes)

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        return self.classify(self.dropout(self.pool(h, real_steps(h, mask))))


__all__ = ["POOLINGS", "ClassificationHead", "Pooling"]
