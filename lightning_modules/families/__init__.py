"""The model-family registry: name -> (config dataclass, encoder class), plus short aliases.

A family is one file that calls `register_family`; adding one touches that file and one import line below.
"""

from dataclasses import dataclass
from typing import Any

from lightning_modules.families.base import Encoder, FamilyConfig


@dataclass(frozen=True)
class Family:
    name: str
    config: type[FamilyConfig]
    encoder: type[Encoder]


FAMILIES: dict[str, Family] = {}
# Alias -> (family, config overrides): `--model lstm` is the rnn family with cell=lstm.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}


def register_family(name: str, config: type[FamilyConfig], aliases: dict[str, dict[str, Any]] | None = None):
    """Class decorator for an Encoder: `@register_family("rnn", RNNConfig, aliases={"lstm": {"cell": "lstm"}})`."""

    def add(encoder: type[Encoder]) -> type[Encoder]:
        FAMILIES[name] = Family(name, config, encoder)
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
    raise ValueError(f"unknown model family {name!r}; choose one of: {', '.join(valid)}")


def build_encoder(name: str, config: FamilyConfig | dict[str, Any] | None, in_dim: int, seq_len: int | None) -> Encoder:
    family_name, overrides = resolve_family(name)
    family = FAMILIES[family_name]
    if config is None or isinstance(config, dict):
        config = family.config(**{**overrides, **(config or {})})
    return family.encoder(config, in_dim=in_dim, seq_len=seq_len)


# One line per family module; importing it registers it.
from lightning_modules.families import linear  # noqa: E402,F401
from lightning_modules.families import mlp  # noqa: E402,F401
from lightning_modules.families import cnn  # noqa: E402,F401
from lightning_modules.families import rnn  # noqa: E402,F401
from lightning_modules.families import transformer  # noqa: E402,F401
from lightning_modules.families import hybrids  # noqa: E402,F401

__all__ = ["ALIASES", "FAMILIES", "Encoder", "Family", "FamilyConfig", "build_encoder", "register_family", "resolve_family"]
