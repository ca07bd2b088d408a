"""Hybrid families: member encoders chained, each fed the previous one's output sequence and mask.

A hybrid's config has one field per member, named after the member's family, in chain order; one `Chain`
encoder serves them all. `cnn_rnn_transformer` (CNN -> LSTM -> Transformer) is the seed pipeline. Members are
reached through the registry only (their config class and `build_encoder`), so hybrids register after them.
"""

from dataclasses import dataclass, field, fields, replace

from torch import Tensor, nn

from lightning_modules.families import FAMILIES, build_encoder, register_family
from lightning_modules.families.base import Encoder, FamilyConfig

# The members' config classes, as annotations: jsonargparse reads them to offer model.cnn.channels and the like.
CNNConfig, RNNConfig, TransformerConfig = (FAMILIES[name].config for name in ("cnn", "rnn", "transformer"))


@dataclass
class HybridConfig(FamilyConfig):
    """Base of the hybrid configs: every field but dropout is a member's config, named after its family.

    Args:
        dropout: dropout probability for every member, overriding each member's own; None keeps theirs.
    """

    dropout: float | None = None

    def __post_init__(self) -> None:
        # Dicts from YAML, the CLI or Optuna become the member's config dataclass.
        for name in self.member_names():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, FAMILIES[name].config(**value))

    def member_names(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "dropout"]


@dataclass
class CNNRNNConfig(HybridConfig):
    """CNN then RNN: local patterns first, recurrence over them.

    Args:
        cnn: options of the convolution stage.
        rnn: options of the recurrent stage.
        dropout: dropout probability for every member, overriding each member's own; None keeps theirs.
    """

    cnn: CNNConfig = field(default_factory=CNNConfig)
    rnn: RNNConfig = field(default_factory=RNNConfig)


@dataclass
class CNNTransformerConfig(HybridConfig):
    """CNN then transformer: convolutions make the tokens attention works on.

    Args:
        cnn: options of the convolution stage.
        transformer: options of the attention stage.
        dropout: dropout probability for every member, overriding each member's own; None keeps theirs.
    """

    cnn: CNNConfig = field(default_factory=CNNConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)


@dataclass
class CNNRNNTransformerConfig(HybridConfig):
    """CNN, then LSTM, then transformer: the seed pipeline.

    Args:
        cnn: options of the convolution stage.
        rnn: options of the recurrent stage.
        transformer: options of the attention stage.
        dropout: dropout probability for every member, overriding each member's own; None keeps theirs.
    """

    cnn: CNNConfig = field(default_factory=CNNConfig)
    rnn: RNNConfig = field(default_factory=RNNConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)


@register_family("cnn_rnn", CNNRNNConfig)
@register_family("cnn_transformer", CNNTransformerConfig)
@register_family("cnn_rnn_transformer", CNNRNNTransformerConfig)
class Chain(Encoder):
    """The members of a hybrid config in order; out_dim and out_len are the last member's."""

    def __init__(self, config: HybridConfig, in_dim: int, seq_len: int | None) -> None:
        super().__init__()
        members = []
        for name in config.member_names():
            member_config = getattr(config, name)
            if config.dropout is not None:
                member_config = replace(member_config, dropout=config.dropout)
            member = build_encoder(name, member_config, in_dim=in_dim, seq_len=seq_len)
            in_dim, seq_len = member.out_dim, member.out_len
            members.append(member)
        self.members = nn.ModuleList(members)
        self.out_dim, self.out_len = in_dim, seq_len

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        for member in self.members:
            x, mask = member(x, mask)
        return x, mask
