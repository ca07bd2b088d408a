"""CycleNet's residual cycle forecasting (RCF, Lin et al. 2024): a learnable cycle taken out of the input and
put back on the forecast, so any backbone forecasts only what the cycle does not explain.

The table Q [W, C] holds one value per phase of a W-step cycle (24 for hourly data with a daily cycle) and input
channel, initialised to zeros and learnt with the backbone. A window whose first input row has absolute row
number p (counted from the series' first row, so its phase is p mod W) loses Q[(p + i) mod W] from input step i
and gains Q[(p + L + j) mod W] (the target channels' columns) on forecast step j.
"""

import torch
from torch import Tensor, nn


class ResidualCycle(nn.Module):
    """The learnable cycle of `cycle_len` steps over `n_channels` inputs; `target_index` picks the targets' columns."""

    def __init__(self, cycle_len: int, n_channels: int, target_index: list[int]) -> None:
        super().__init__()
        self.cycle_len = cycle_len
        self.table = nn.Parameter(torch.zeros(cycle_len, n_channels))
        self.register_buffer("target_index", torch.tensor(target_index), persistent=False)

    def at(self, start: Tensor, steps: int) -> Tensor:
        """Q at rows start + 0..steps-1 of every window: start [B] (absolute row numbers) -> [B, steps, C]."""
        rows = start.to(self.table.device).long().view(-1, 1) + torch.arange(steps, device=self.table.device)
        return self.table[rows % self.cycle_len]  # % is Python's modulo on tensors: rows before the first are fine

    def remove(self, x: Tensor, start: Tensor) -> Tensor:
        """x [B, L, C] whose first row is row `start` -> the residual after the cycle."""
        return x - self.at(start, x.shape[1])

    def restore(self, y: Tensor, start: Tensor, lookback: int) -> Tensor:
        """A forecast y [B, H, K] of the rows after a lookback-row window starting at `start`, plus the cycle."""
        return y + self.at(start + lookback, y.shape[1])[..., self.target_index]
