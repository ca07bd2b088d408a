"""The forecasting model: optional RevIN, optional channel independence, a stem, a family's encoder, a linear head.

forward(x [B, L, C]) -> [B, H, K]. The head flattens the encoder's [B, T', D] output and maps it with one Linear
to all H*K forecasts at once (direct multi-step forecasting); with the linear family and decomposition this
head is what makes the model DLinear.
"""

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import build_encoder
from lightning_modules.families.base import FamilyConfig


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022).

    Each window is scaled by its own per-channel mean and std, so level shifts between training and test windows
    never reach the encoder; forecasts are scaled back with the statistics of the target channels.
    """

    def __init__(self, n_channels: int, target_index: list[int], affine: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.register_buffer("target_index", torch.tensor(target_index), persistent=False)
        self.weight = nn.Parameter(torch.ones(n_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(n_channels)) if affine else None
        self.eps = eps

    def normalise(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x [B, L, C] -> normalised x and the (mean, std) [B, 1, C] that denormalise() needs."""
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.weight is not None:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def denormalise(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """y [B, H, K] in normalised units -> the targets' original units."""
        mean, std = (s[..., self.target_index] for s in stats)
        if self.weight is not None:
            y = (y - self.bias[self.target_index]) / (self.weight[self.target_index] + self.eps**2)
        return y * std + mean


def check_targets(
    n_inputs: int, n_targets: int, target_index: list[int] | None, revin: bool, channel_independent: bool
) -> None:
    """Reject option combinations that cannot forecast the targets, saying which option to change."""
    in_range = target_index is not None and all(0 <= i < n_inputs for i in target_index)
    if target_index is not None and (len(target_index) != n_targets or not in_range):
        raise ConfigError(
            f"target_index {target_index} must list {n_targets} target positions among the "
            f"{n_inputs} inputs (0..{n_inputs - 1})"
        )
    if revin and target_index is None:
        raise ConfigError(
            "revin denormalises forecasts with the target channels' statistics, so it needs target_index "
            "(the targets' positions among the inputs); turn revin off for targets that are not inputs"
        )
    if channel_independent and (target_index is None or list(target_index) != list(range(n_inputs))):
        raise ConfigError(
            f"channel_independent forecasts every input channel from its own past, so the targets must be "
            f"exactly the inputs in order (n_targets == n_inputs == {n_inputs}, target_index == "
            f"{list(range(n_inputs))}); got n_targets={n_targets}, target_index={target_index}"
        )


SUMMARIES: dict[str, Callable[[Tensor], Tensor]] = {
    "flatten": lambda h: h.flatten(1),
    "last": lambda h: h[:, -1],
    "mean": lambda h: h.mean(dim=1),
}


class Forecaster(nn.Module):
    """[B, L, C] -> [B, H, K] with any registered encoder family.

    Args:
        family: family name or alias (see lightning_modules.families).
        family_config: the family's config dataclass or a dict of its fields; None takes the defaults.
        n_inputs: input channels C.
        n_targets: forecast channels K.
        lookback: input steps L.
        horizon: forecast steps H.
        target_index: positions of the K targets among the C inputs, or None when targets are not inputs.
        revin: normalise every window by its own statistics and denormalise the forecast (needs target_index).
        revin_affine: give RevIN a learnable per-channel scale and shift.
        channel_independent: run every channel as its own univariate series [B*C, L, 1] through one shared
            encoder and head, PatchTST-style (needs the targets to be exactly the inputs).
        stem_dim: project every time step's values linearly to this width before the encoder; None keeps them.
        head: "flatten" maps every encoder step to the forecast (DLinear, PatchTST); "last" and "mean" map one
            summary step, which keeps the head small for long unpatched sequences (an LSTM over 512 steps of
            width 128 would otherwise need a 44M-weight head).
    """

    def __init__(
        self,
        family: str,
        family_config: FamilyConfig | dict[str, Any] | None = None,
        *,
        n_inputs: int,
        n_targets: int,
        lookback: int,
        horizon: int,
        target_index: list[int] | None = None,
        revin: bool = False,
        revin_affine: bool = False,
        channel_independent: bool = False,
        stem_dim: int | None = None,
        head: Literal["flatten", "last", "mean"] = "flatten",
    ) -> None:
        super().__init__()
        check_targets(n_inputs, n_targets, target_index, revin, channel_independent)
        self.horizon, self.channel_independent = horizon, channel_independent
        self.revin = RevIN(n_inputs, target_index, revin_affine) if revin else None
        series_dim = 1 if channel_independent else n_inputs
        self.stem = nn.Linear(series_dim, stem_dim) if stem_dim else nn.Identity()
        self.encoder = build_encoder(family, family_config, in_dim=stem_dim or series_dim, seq_len=lookback)
        self.outputs_per_series = 1 if channel_independent else n_targets
        self.summary = SUMMARIES[head]
        summary_len = self.encoder.out_len if head == "flatten" else 1
        self.head = nn.Linear(summary_len * self.encoder.out_dim, horizon * self.outputs_per_series)

    def forward(self, x: Tensor) -> Tensor:
        batch, lookback, channels = x.shape
        if self.revin is not None:
            x, stats = self.revin.normalise(x)
        if self.channel_independent:
            x = x.transpose(1, 2).reshape(batch * channels, lookback, 1)
        h, _ = self.encoder(self.stem(x))
        y = self.head(self.summary(h)).view(-1, self.horizon, self.outputs_per_series)
        if self.channel_independent:
            y = y.view(batch, channels, self.horizon).transpose(1, 2)
        if self.revin is not None:
            y = self.revin.denormalise(y, stats)
        return y
