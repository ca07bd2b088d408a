"""The `transformer` family: tokens (single steps, or PatchTST-style patches) through a transformer encoder.

A patch is `patch_len` consecutive steps of the raw features, flattened and projected to d_model (Nie et al.
2023); without patching every step is a patch of length 1, so both paths are one code path. The end of the
sequence is zero-padded to whole patches, the same zeros that padded steps are set to, so a padded item's
real tokens see exactly what they would see alone; attention ignores padded tokens via key_padding_mask.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig


@dataclass
class TransformerConfig(FamilyConfig):
    """Options of the transformer family.

    Args:
        d_model: width of the token vectors inside the transformer.
        n_heads: attention heads; must divide d_model.
        n_layers: encoder layers.
        ff_dim: hidden width of every layer's feed-forward block.
        positional: position encoding added to the tokens: "sinusoidal" (fixed) or "learned".
        max_len: most tokens a variable-length input may have with learned positions
            (fixed-length input sizes the table itself).
        patch_len: steps per token, PatchTST-style; None makes every step a token.
        stride: steps between patch starts, at most patch_len; None means patch_len (no overlap).
        norm_first: layer norm before attention and feed-forward (pre-norm, steadier to train) instead of after.
        dropout: dropout probability on the tokens and inside every layer.
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 128
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_len: int = 512
    patch_len: int | None = None
    stride: int | None = None
    norm_first: bool = True
    dropout: float = 0.1


def n_patches(length: int, patch_len: int, stride: int) -> int:
    """Patches needed to cover `length` steps (the last one may run past the end)."""
    return max(math.ceil((length - patch_len) / stride), 0) + 1


def patchify(x: Tensor, patch_len: int, stride: int) -> Tensor:
    """[B, T, D] -> [B, N, patch_len * D], the end zero-padded to whole patches."""
    count = n_patches(x.shape[1], patch_len, stride)
    x = F.pad(x, (0, 0, 0, (count - 1) * stride + patch_len - x.shape[1]))
    return x.unfold(1, patch_len, stride).flatten(2)


def patch_mask(mask: Tensor, patch_len: int, stride: int) -> Tensor:
    """[B, T] -> [B, N]: a patch is real when it holds a real step earlier patches do not.

    With right padding that is its first new step, (j - 1) * stride + patch_len, real; so an item keeps as many
    patches as it would get alone.
    """
    later = torch.arange(n_patches(mask.shape[1], patch_len, stride) - 1) * stride + patch_len
    first_new = torch.cat([torch.zeros(1, dtype=torch.long), later])
    return mask[:, first_new.to(mask.device)]


def sinusoid_table(length: int, width: int) -> Tensor:
    """The fixed sin/cos position encoding of Vaswani et al. (2017), [length, width]."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : width // 2]
    return table


@register_family("transformer", TransformerConfig)
class TransformerEncoder(Encoder):
    """[B, T, D] -> [B, number of patches, d_model]."""

    def __init__(self, config: TransformerConfig, in_dim: int, seq_len: int | None) -> None:
        super().__init__()
        if config.d_model % config.n_heads:
            raise ConfigError(f"n_heads ({config.n_heads}) must divide d_model ({config.d_model})")
        self.patch_len = config.patch_len or 1
        self.stride = config.stride or self.patch_len
        if not 1 <= self.stride <= self.patch_len:
            raise ConfigError(
                f"stride must be between 1 and patch_len ({self.patch_len}) so no step is skipped; got {self.stride}"
            )
        self.out_dim = config.d_model
        self.out_len = None if seq_len is None else n_patches(seq_len, self.patch_len, self.stride)
        self.project = nn.Linear(self.patch_len * in_dim, config.d_model)
        self.learned_positions: nn.Parameter | None = None
        if config.positional == "learned":
            self.learned_positions = nn.Parameter(0.02 * torch.randn(self.out_len or config.max_len, config.d_model))
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.n_heads,
            config.ff_dim,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=config.norm_first,
        )
        # Pre-norm layers leave the residual stream unnormalised, so a final norm closes the stack.
        final_norm = nn.LayerNorm(config.d_model) if config.norm_first else None
        self.layers = nn.TransformerEncoder(layer, config.n_layers, norm=final_norm, enable_nested_tensor=False)

    def positions(self, count: int, device: torch.device) -> Tensor:
        if self.learned_positions is None:
            return sinusoid_table(count, self.out_dim).to(device)
        if count > len(self.learned_positions):
            raise ConfigError(
                f"input has {count} tokens but learned positions cover {len(self.learned_positions)}; "
                "raise max_len or use positional='sinusoidal'"
            )
        return self.learned_positions[:count]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if mask is not None:
            x = x * mask.unsqueeze(-1)
            mask = patch_mask(mask, self.patch_len, self.stride)
        tokens = self.project(patchify(x, self.patch_len, self.stride))
        h = self.dropout(tokens + self.positions(tokens.shape[1], tokens.device))
        h = self.layers(h, src_key_padding_mask=None if mask is None else ~mask)
        if mask is not None:
            h = h * mask.unsqueeze(-1)
        return h, mask
