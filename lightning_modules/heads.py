"""Task heads: pool an encoder's sequence over time, then dropout and one Linear to all of an item's outputs.

One Head serves every task; the registry says, per task, what shape an item's outputs take and which config
key chooses the pooling. A forecast is [H, K] at once (direct multi-step forecasting; "flatten" keeps every
encoder step, which with the linear family is DLinear), a classification one logit per class. Every pooling
reads only real steps (mask True), so padding never changes an item's outputs.
A family that forecasts by itself (output "horizon": [B, H, D], one row per step ahead) gets a StepHead instead,
which only maps its D features to the K targets at every step, and no pooling.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from datamodules.specs import Spec
from lightning_modules.families.base import Encoder
from lightning_modules.pooling import TEMPORAL_POOLINGS, TemporalPooling, build_pooling, real_steps


class Head(nn.Module):
    """(h [B, T, dim], mask [B, T] or None) -> [B, *out_shape]; `length` is T when fixed (for "flatten")."""

    def __init__(
        self,
        dim: int,
        length: int | None,
        out_shape: tuple[int, ...],
        pooling: TemporalPooling,
        dropout: float,
        key: str,
    ) -> None:
        super().__init__()
        self.pool, width = build_pooling(TEMPORAL_POOLINGS, pooling, dim, length, key)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width, math.prod(out_shape))
        self.out_shape = out_shape

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        return self.out(self.dropout(self.pool(h, real_steps(h, mask)))).unflatten(-1, self.out_shape)


class StepHead(nn.Module):
    """(y [B, H, D], None) -> [B, H, K]: the identity when the family forecast exactly the targets (D == K and the
    targets are the inputs in order), else one Linear from D to K shared by every step."""

    def __init__(self, dim: int, spec: Spec) -> None:
        super().__init__()
        targets_are_inputs = spec.target_index is not None and list(spec.target_index) == list(range(dim))
        same = dim == spec.n_targets and targets_are_inputs
        self.out = nn.Identity() if same else nn.Linear(dim, spec.n_targets)

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        return self.out(h)


@dataclass(frozen=True)
class TaskHead:
    """What a task's head gives per item (from the spec), and the config key that picks its pooling."""

    out_shape: Callable[[Spec], tuple[int, ...]]
    pooling_key: str


HEADS: dict[str, TaskHead] = {
    "forecast": TaskHead(lambda spec: (spec.horizon, spec.n_targets), "task.head"),
    "classify": TaskHead(lambda spec: (spec.num_classes,), "task.pooling"),
}


def build_head(
    task: str, encoder: Encoder, spec: Spec, pooling: TemporalPooling, dropout: float, family_output: str = "steps"
) -> Head | StepHead:
    """The task's head for an encoder; family_output "horizon" (a family that forecast itself) gets a StepHead."""
    if family_output == "horizon":
        return StepHead(encoder.out_dim, spec)
    head = HEADS[task]
    return Head(encoder.out_dim, encoder.out_len, head.out_shape(spec), pooling, dropout, head.pooling_key)


__all__ = ["HEADS", "Head", "StepHead", "TaskHead", "build_head"]
