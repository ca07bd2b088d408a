"""The model-family registry: name -> (config dataclass, encoder class, what it reads), plus short aliases.

A family is one file that calls `register_family`; adding one touches that file and one import line below.
Families never import each other: what they share lives in lightning_modules.layers and .pooling, and hybrids
reach their members through this registry.
Most families read a modality stem's per-step vectors (input "steps"); video families that convolve or recur
over whole frames read the raw clip (input "clip"), and the classifier builds the stem that gives them that.
Most families output a sequence for the task's head to pool (output "steps"); forecasters that decode the whole
horizon themselves (segrnn, sparsetsf) output one step per step ahead (output "horizon", see base.py).
"""

from dataclasses import dataclass
from typing import Any

from datamodules.errors import ConfigError
from lightning_modules.families.base import Encoder, FamilyConfig

# What a family's encoder reads: the stem's [B, T, D] sequence, or raw frames [B, T, C, H, W].
FAMILY_INPUTS = ("steps", "clip")
# What it outputs: a sequence for the head to pool, or the forecast's H steps [B, H, D] (built with horizon=H).
FAMILY_OUTPUTS = ("steps", "horizon")


@dataclass(frozen=True)
class Family:
    name: str
    config: type[FamilyConfig]
    encoder: type[Encoder]
    input: str = "steps"
    output: str = "steps"


FAMILIES: dict[str, Family] = {}
# Alias -> (family, config overrides): `--model lstm` is the rnn family with cell=lstm.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}


def register_family(
    name: str,
    config: type[FamilyConfig],
    aliases: dict[str, dict[str, Any]] | None = None,
    input: str = "steps",
    output: str = "steps",
):
    """Class decorator for an Encoder: `@register_family("rnn", RNNConfig, aliases={"lstm": {"cell": "lstm"}})`;
    `input="clip"` for a family that reads raw frames, `output="horizon"` for one that forecasts (see base.py)."""
    if input not in FAMILY_INPUTS:
        raise ValueError(f"family {name!r}: input {input!r}; choose one of: {', '.join(FAMILY_INPUTS)}")
    if output not in FAMILY_OUTPUTS:
        raise ValueError(f"family {name!r}: output {output!r}; choose one of: {', '.join(FAMILY_OUTPUTS)}")

    def add(encoder: type[Encoder]) -> type[Encoder]:
        FAMILIES[name] = Family(name, config, encoder, input, output)
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


def built_in_families() -> list[str]:
    """The families stw itself defines, without those plugins registered (experiments/plugins.py)."""
    return [name for name, family in FAMILIES.items() if family.encoder.__module__.startswith(__name__ + ".")]


def build_encoder(
    name: str,
    config: FamilyConfig | dict[str, Any] | None,
    in_dim: int | tuple[int, int, int],
    seq_len: int | None,
    horizon: int | None = None,
) -> Encoder:
    """An encoder; in_dim is the stem's width D, or the frame shape (C, H, W) for a family with input "clip";
    horizon is the forecast's H, which only families with output "horizon" read (and need)."""
    family_name, overrides = resolve_family(name)
    family = FAMILIES[family_name]
    if config is None or isinstance(config, dict):
        config = family.config(**{**overrides, **(config or {})})
    if family.output == "steps":
        return family.encoder(config, in_dim=in_dim, seq_len=seq_len)
    if horizon is None:
        raise ConfigError(
            f"the {family_name} family decodes a forecast horizon itself, so it only forecasts; "
            "use a family such as cnn, rnn or transformer for other tasks"
        )
    return family.encoder(config, in_dim=in_dim, seq_len=seq_len, horizon=horizon)


# One line per family module; importing it registers it.
from lightning_modules.families import (
    c3d,
    cnn,
    convlstm,
    frame_avg,
    linear,
    mlp,
    rnn,
    segrnn,
    sparsetsf,
    transformer,
)

# isort: split
# Hybrids chain registered families, so they are imported once their members are.
from lightning_modules.families import hybrids

__all__ = [
    "ALIASES",
    "FAMILIES",
    "FAMILY_INPUTS",
    "FAMILY_OUTPUTS",
    "Encoder",
    "Family",
    "FamilyConfig",
    "build_encoder",
    "built_in_families",
    "family_of",
    "register_family",
    "resolve_family",
]
