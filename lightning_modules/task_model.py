"""The model of every task: a modality stem, any registered encoder family, the task's head.

forward(x) -> [B, *outputs], where x is whatever the stem for spec.input_kind reads (windows [B, L, C] of a
series, token ids [B, T], frames [B, T, C, H, W]) and the outputs are the task's (a forecast [H, K], class
logits). The stem is chosen by the input kind and by what the family reads: per-step vectors for most
families, the raw clip for c3d and convlstm. The stem's mask follows the sequence through the encoder into the
head's pooling, so padded steps never count. Families that need a fixed length (linear, mlp) refuse
variable-length input such as tokens when they are built, with an error naming the families that work.
"""

from typing import Any

from torch import Tensor, nn

from datamodules.specs import Spec
from lightning_modules.families import build_encoder, family_of
from lightning_modules.families.base import FamilyConfig
from lightning_modules.heads import build_head
from lightning_modules.pooling import TemporalPooling
from lightning_modules.stems import build_stem


class TaskModel(nn.Module):
    """stem -> encoder -> head; Forecaster and Classifier are this with their tasks' options.

    Args:
        task: the task whose head to build ("forecast", "classify"; see lightning_modules.heads).
        family: family name or alias (see lightning_modules.families).
        family_config: the family's config dataclass or a dict of its fields; None takes the defaults.
        spec: the datamodule's spec: input_kind and what the stem and the head read.
        stem_dim: width of the stem's output, the encoder's input; None keeps the input's width where it can.
        stem_dropout: dropout on the stem's output.
        stem_options: the input kind's stem options (dataclass or dict; see lightning_modules.stems), or None.
        pooling: how the head pools time (see lightning_modules.pooling).
        head_dropout: dropout on the pooled vector before the head's Linear.
    """

    def __init__(
        self,
        task: str,
        family: str,
        family_config: FamilyConfig | dict[str, Any] | None,
        spec: Spec,
        *,
        stem_dim: int | None,
        stem_dropout: float,
        stem_options: Any | dict[str, Any] | None,
        pooling: TemporalPooling,
        head_dropout: float,
    ) -> None:
        super().__init__()
        self.stem = build_stem(spec, stem_dim, stem_dropout, reads=family_of(family).input, options=stem_options)
        horizon = getattr(spec, "horizon", None)
        self.encoder = build_encoder(family, family_config, self.stem.out_dim, self.stem.seq_len, horizon)
        self.head = build_head(task, self.encoder, spec, pooling, head_dropout, family_of(family).output)

    def forward(self, x: Tensor) -> Tensor:
        h, mask = self.stem(x)
        h, mask = self.encoder(h, mask)
        return self.head(h, mask)


__all__ = ["TaskModel"]
