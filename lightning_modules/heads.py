"""The classification head: pool an encoder's sequence over time, then dropout and a Linear to class logits.

Every pooling reads only real steps (mask True), so padding never changes an item's logits.
"""

from torch import Tensor, nn

from lightning_modules.pooling import TEMPORAL_POOLINGS, TemporalPooling, build_pooling, real_steps


class ClassificationHead(nn.Module):
    """(h [B, T, dim], mask [B, T] or None) -> logits [B, num_classes]."""

    def __init__(self, dim: int, num_classes: int, pooling: TemporalPooling, dropout: float) -> None:
        super().__init__()
        self.pool, width = build_pooling(TEMPORAL_POOLINGS, pooling, dim, None, "task.pooling")
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(width, num_classes)

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        return self.classify(self.dropout(self.pool(h, real_steps(h, mask))))


__all__ = ["ClassificationHead"]
