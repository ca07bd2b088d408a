"""The forecasting model: the task model (stem -> encoder -> head) wrapped in optional RevIN, residual cycle and
channel independence.

forward(x [B, L, C], start [B]) -> [B, H, K]; start (each window's first row in the whole series) is read only
with a residual cycle. The stem of input kind "values" projects every step's channel values to
task.stem_dim (or keeps them); the forecast head pools the encoder's [B, T', D] output ("flatten" keeps every
step) and maps it with one Linear to all H*K forecasts at once (direct multi-step forecasting); with the linear
family and decomposition this head is what makes the model DLinear.
"""

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from datamodules.errors import ConfigError
from datamodules.specs import ForecastSpec
from lightning_modules.families.base import FamilyConfig
from lightning_modules.pooling import TemporalPooling
from lightning_modules.residual_cycle import ResidualCycle
from lightning_modules.task_model import TaskModel


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


def check_targets(spec: ForecastSpec, revin: bool, channel_independent: bool, cycle_len: int = 0,
                  highway: bool = False) -> None:  # fmt: skip
    """Reject option combinations that cannot forecast the targets, saying which option to change."""
    n_inputs, n_targets, target_index = spec.n_inputs, spec.n_targets, spec.target_index
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
    if cycle_len and target_index is None:
        raise ConfigError(
            "task.cycle_len adds the target channels' learnt cycle back onto the forecast, so it needs target_index "
            "(the targets' positions among the inputs); set task.cycle_len=0 for targets that are not inputs"
        )
    if highway and target_index is None:
        raise ConfigError(
            "task.highway maps each target channel's own lookback onto its forecast, so it needs target_index "
            "(the targets' positions among the inputs); set task.highway=false for targets that are not inputs"
        )
    if channel_independent and (target_index is None or list(target_index) != list(range(n_inputs))):
        raise ConfigError(
            f"channel_independent forecasts every input channel from its own past, so the targets must be "
            f"exactly the inputs in order (n_targets == n_inputs == {n_inputs}, target_index == "
            f"{list(range(n_inputs))}); got n_targets={n_targets}, target_index={target_index}"
        )


def one_channel(spec: ForecastSpec) -> ForecastSpec:
    """What a channel-independent model's stem and head see: each channel alone, a series forecasting itself."""
    return replace(spec, input_names=["channel"], target_names=["channel"], target_index=[0])


class Highway(nn.Module):
    """LSTNet's highway (Lai et al. 2018): one Linear(L, H) shared by the target channels maps each one's own
    lookback straight onto its forecast, beside the network. Without it a deep encoder's forecast reaches the
    input values only through a pooled summary of the window, while one linear map alone is among the strongest
    ETTh1 forecasters (RLinear)."""

    def __init__(self, lookback: int, horizon: int, target_index: list[int]) -> None:
        super().__init__()
        self.register_buffer("target_index", torch.tensor(target_index), persistent=False)
        self.linear = nn.Linear(lookback, horizon)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, L, C] -> [B, H, K]"""
        return self.linear(x[..., self.target_index].transpose(1, 2)).transpose(1, 2)


class Forecaster(TaskModel):
    """[B, L, C] -> [B, H, K] with any registered encoder family.

    Args:
        family: family name or alias (see lightning_modules.families).
        family_config: the family's config dataclass or a dict of its fields; None takes the defaults.
        spec: the datamodule's spec: channels, targets (target_index None when targets are not inputs),
            lookback and horizon.
        revin: normalise every window by its own statistics and denormalise the forecast (needs target_index).
        revin_affine: give RevIN a learnable per-channel scale and shift.
        channel_independent: run every channel as its own univariate series [B*C, L, 1] through one shared
            stem, encoder and head, PatchTST-style (needs the targets to be exactly the inputs).
        stem_dim: project every time step's values linearly to this width before the encoder; None keeps them.
        head: how the head pools the encoder's steps: "flatten" maps every step to the forecast (DLinear,
            PatchTST); "last", "mean", "max" and "attention" map one summary step, which keeps the head small for
            long unpatched sequences (an LSTM over 512 steps of width 128 would otherwise need a 44M-weight head).
        stem_options: the input kind's stem options, for kinds that have them (values has none).
        cycle_len: learn a cycle of this many steps per input channel, take it out of the (normalised) input and
            put it back on the forecast (CycleNet's RCF, lightning_modules/residual_cycle.py); 0 is off. Needs
            each window's first row in forward's `start`.
        highway: add a linear map of each target channel's own (normalised) lookback to the forecast (Highway).
    """

    def __init__(
        self,
        family: str,
        family_config: FamilyConfig | dict[str, Any] | None = None,
        *,
        spec: ForecastSpec,
        revin: bool = False,
        revin_affine: bool = False,
        channel_independent: bool = False,
        stem_dim: int | None = None,
        head: TemporalPooling = "flatten",
        stem_options: Any | dict[str, Any] | None = None,
        cycle_len: int = 0,
        highway: bool = False,
    ) -> None:
        check_targets(spec, revin, channel_independent, cycle_len, highway)
        super().__init__(
            "forecast",
            family,
            family_config,
            one_channel(spec) if channel_independent else spec,
            stem_dim=stem_dim,
            stem_dropout=0.0,
            stem_options=stem_options,
            pooling=head,
            head_dropout=0.0,
        )
        self.channel_independent = channel_independent
        self.revin = RevIN(spec.n_inputs, spec.target_index, revin_affine) if revin else None
        self.cycle = ResidualCycle(cycle_len, spec.n_inputs, spec.target_index) if cycle_len else None
        self.highway = Highway(spec.lookback, spec.horizon, spec.target_index) if highway else None

    def forward(self, x: Tensor, start: Tensor | None = None) -> Tensor:
        batch, lookback, channels = x.shape
        if self.cycle is not None and start is None:
            raise ValueError("a forecaster with a residual cycle needs each window's first row number (start)")
        if self.revin is not None:
            x, stats = self.revin.normalise(x)
        if self.cycle is not None:  # per input channel, so before channels are flattened into the batch
            x = self.cycle.remove(x, start)
        direct = self.highway(x) if self.highway is not None else None
        if self.channel_independent:
            x = x.transpose(1, 2).reshape(batch * channels, lookback, 1)
        y = super().forward(x)
        if self.channel_independent:
            y = y.view(batch, channels, -1).transpose(1, 2)
        if direct is not None:
            y = y + direct
        if self.cycle is not None:
            y = self.cycle.restore(y, start, lookback)
        if self.revin is not None:
            y = self.revin.denormalise(y, stats)
        return y
