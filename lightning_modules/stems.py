"""Modality stems: what turns a batch's raw input into the [B, T, D] sequence every encoder family reads.

One registry, keyed by the datamodule spec's `input_kind`, so a new modality adds a stem here and nothing
else in the model changes. A stem maps an input batch to (h [B, T, D], mask [B, T] bool True=real, or None)
and exposes `out_dim` (D) and `seq_len` (T, or None when items differ in length).
"""

from typing import Any

from torch import Tensor, nn


class TokenStem(nn.Module):
    """Token ids [B, T] -> embeddings [B, T, dim]; padding ids embed to zeros and are masked out.

    Reads spec["vocab_size"] and spec["pad_id"]. Texts differ in length, so seq_len is None.
    """

    def __init__(self, spec: dict[str, Any], dim: int, dropout: float) -> None:
        super().__init__()
        self.pad_id = spec["pad_id"]
        self.embedding = nn.Embedding(spec["vocab_size"], dim, padding_idx=self.pad_id)
        self.dropout = nn.Dropout(dropout)
        self.out_dim, self.seq_len = dim, None

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.dropout(self.embedding(ids)), ids != self.pad_id


class VectorStem(nn.Module):
    """Per-step feature vectors [B, T, F] (e.g. keypoints per frame) -> a linear projection [B, T, dim].

    Reads spec["n_inputs"] (F) and spec.get("seq_len") (T when every item has the same length). Items are not
    padded, so the mask is None.
    """

    def __init__(self, spec: dict[str, Any], dim: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Linear(spec["n_inputs"], dim)
        self.dropout = nn.Dropout(dropout)
        self.out_dim, self.seq_len = dim, spec.get("seq_len")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.dropout(self.project(x)), None


STEMS: dict[str, type[nn.Module]] = {
    "tokens": TokenStem,
    "vectors": VectorStem,
    # "frames": a per-frame 2D CNN, [B, T, C, H, W] -> [B, T, D], comes with the video issue.
}


def build_stem(spec: dict[str, Any], dim: int, dropout: float) -> nn.Module:
    """The stem for spec["input_kind"]; an unknown kind lists the registered ones."""
    kind = spec.get("input_kind")
    if kind not in STEMS:
        raise ValueError(f"no stem for input_kind {kind!r}; registered: {', '.join(sorted(STEMS))}")
    return STEMS[kind](spec, dim, dropout)


__all__ = ["STEMS", "TokenStem", "VectorStem", "build_stem"]
