"""Building blocks shared by several families: activations and stacks of fully connected layers."""

from typing import Literal

from torch import nn

Activation = Literal["relu", "gelu", "tanh"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def hidden_layers(widths: list[int], activation: Activation, dropout: float) -> nn.Sequential:
    """Linear -> activation -> dropout for each consecutive pair of widths (none for a single width)."""
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(width_in, width_out), ACTIVATIONS[activation](), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


__all__ = ["ACTIVATIONS", "Activation", "hidden_layers"]
