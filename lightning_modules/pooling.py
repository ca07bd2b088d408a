"""Every pooling in one place: over time (a sequence's steps) and over space (a feature map's positions).

Both registries have one shape, name -> (width, length) -> (module, output width): the width is a step's
features (or a map's channels) and the length its steps (or positions), which "flatten" needs and the others
ignore. Temporal modules map (h [B, T, D], mask [B, T] bool, True = real step) -> [B, width] and read only real
steps, so padding never changes an item's result; spatial modules map h [N, C, H, W] -> [N, width].
"""

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from datamodules.errors import ConfigError

TemporalPooling = Literal["last", "mean", "max", "attention", "flatten"]
SpatialPooling = Literal["max", "avg", "attention", "flatten"]
PoolFactory = Callable[[int, int | None], tuple[nn.Module, int]]


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


def flatten_steps(h: Tensor, mask: Tensor | None = None) -> Tensor:
    """Every step's (or position's) features side by side; only for fixed-length input, which is never padded."""
    return h.flatten(1)


class FixedPool(nn.Module):
    """A pooling without parameters, as a module so every pooling plugs in the same way."""

    def __init__(self, pool: Callable[..., Tensor]) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.pool(*inputs)


class AttentionPool(nn.Module):
    """A learned score per step, softmaxed over the real steps, weights the average of the steps."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (torch.softmax(scores, dim=1).unsqueeze(-1) * h).sum(dim=1)


class SpatialAttentionPool(AttentionPool):
    """Attention pooling with a map's positions as the steps: [N, C, H, W] -> [N, C]."""

    def forward(self, h: Tensor) -> Tensor:
        positions = h.flatten(2).transpose(1, 2)  # [N, H*W, C]
        return super().forward(positions, real_steps(positions, None))


def flatten_factory(what: str) -> PoolFactory:
    """The "flatten" entry of a registry: it needs the length, so variable-length input is refused."""

    def build(width: int, length: int | None) -> tuple[nn.Module, int]:
        if length is None:
            raise ConfigError(
                f"flatten pooling keeps every {what}, so it needs a fixed number of them, but these items differ "
                "in length (e.g. text); choose last, mean, max or attention"
            )
        return FixedPool(flatten_steps), width * length

    return build


def fixed(pool: Callable[..., Tensor]) -> PoolFactory:
    """The registry entry of a parameter-free pooling that keeps the width."""
    return lambda width, length: (FixedPool(pool), width)


TEMPORAL_POOLINGS: dict[str, PoolFactory] = {
    "last": fixed(last_step),
    "mean": fixed(mean_steps),
    "max": fixed(max_steps),
    "attention": lambda width, length: (AttentionPool(width), width),
    "flatten": flatten_factory("step"),
}
SPATIAL_POOLINGS: dict[str, PoolFactory] = {
    "max": fixed(lambda h: h.amax(dim=(2, 3))),
    "avg": fixed(lambda h: h.mean(dim=(2, 3))),
    "attention": lambda width, length: (SpatialAttentionPool(width), width),
    "flatten": flatten_factory("position"),  # channel-major: [C, H, W] flattened
}


def build_pooling(
    registry: dict[str, PoolFactory], name: str, width: int, length: int | None, key: str
) -> tuple[nn.Module, int]:
    """A pooling from one of the registries; an unknown name says which config key to change and to what."""
    if name not in registry:
        raise ConfigError(f"{key}={name!r} is not a pooling; choose one of: {', '.join(registry)}")
    return registry[name](width, length)


__all__ = [
    "SPATIAL_POOLINGS",
    "TEMPORAL_POOLINGS",
    "AttentionPool",
    "SpatialPooling",
    "TemporalPooling",
    "build_pooling",
    "last_step",
    "max_steps",
    "mean_steps",
    "real_steps",
]
