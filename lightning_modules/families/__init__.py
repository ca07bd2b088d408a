"""The model-family registry: name -> (config dataclass, encoder class, what it reads), plus short aliases.

A family is one file that calls `register_family`; adding one touches that file and one import line below.
Families never import each other: what they share lives in lightning_modules.layers and .pooling, and hybrids
reach their members through this registry.
Most families read a modality stem's per-step vectors (input "steps"); video families that convolve or recur
over whole frames read the raw clip (input "clip"), and the classifier builds the stem that gives them that.
"""

from dataclasses import dataclass
from typing import Any

from datamodules.errors import ConfigError
from lightning_modules.families.base import Encoder, FamilyConfig

# What a family's encoder reads: the stem's [B, T, D] sequence, or raw frames [B, T, C, H, W].
FAMILY_INPUTS = ("steps", "clip")


@dataclass(frozen=True)
class Family:
    name: str
    config: type[FamilyConfig]
    encoder: type[Encoder]
    input: str = "steps"


FAMILIES: dict[str, Family] = {}
# Alias -> (family, config overrides): `--model lstm` is the rnn family with cell=lstm.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}


def register_family(
    name: str, config: type[FamilyConfig], aliases: dict[str, dict[str, Any]] | None = None, input: str = "steps"
):
    """Class decorator for an Encoder: `@register_family("rnn", RNNConfig, aliases={"lstm": {"cell": "lstm"}})`;
    `input="clip"` for a family that reads raw frames (see base.py)."""
    if input not in FAMILY_INPUTS:
        raise ValueError(f"family {name!r}: input {input!r}; choose one of: {', '.join(FAMILY_INPUTS)}")

    def add(encoder: type[Encoder]) -> type[Encoder]:
        FAMILIES[name] = Family(name, config, encoder, input)
        for alias, overrides in (aliases or {}).items():
            ALIASES[alias] = (name, overrides)
        return encoder

    return add


def resolve_family(name: str) -> tuple[str, dict[str, Any]]:
    """Family name and config overrides for a family name or alias; unknown names list the valid ones."""
    if name in FAMILIES:
        return name, {}
    if name in ALIASES:
        return ALIASES[name]
    valid = sorted(FAMILIES) + sorted(ALIASES)
    raise ConfigError(f"unknown model family {name!r}; choose one of: {', '.join(valid)} (your own families come "
                      "in through plugins: see --plugin in `stw --help`)")  # fmt: skip


def family_of(name: str) -> Family:
    """The registered family behind a family name or alias."""
    return FAMILIES[resolve_family(name)[0]]


def build_encoder(
    name: str, config: FamilyConfig | dict[str, Any] | None, in_dim: int | tuple[int, int, int], seq_len: int | None
) -> Encoder:
    """An encoder; in_dim is the stem's width D, or the frame shape (C, H, W) for a family with input "clip"."""
    family_name, overrides = resolve_family(name)
    family = FAMILIES[family_name]
    if config is None or isinstance(config, dict):
        config = family.config(**{**overrides, **(config or {})})
    return family.encoder(config, in_dim=in_dim, seq_len=seq_len)


# One line per family module; importing it registers it.
from lightning_modules.families import (
    c3d,
    cnn,
    convlstm,
    frame_avg,
    linear,
    mlp,
    rnn,
    transformer,
)

# isort: split
# Hybrids chain registered families, so they are imported once their members are.
from lightning_modules.families import hybrids

__all__ = [
    "ALIASES",
    "FAMILIES",
    "FAMILY_INPUTS",
    "Encoder",
    "Family",
    "FamilyConfig",
    "build_encoder",
    "family_of",
    "register_family",
    "resolve_family",
]
