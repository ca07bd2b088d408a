"""Sliding windows as zero-copy views, served a whole batch at a time.

On 2 CPU cores, one fancy-index per batch over an unfolded tensor beats per-item __getitem__ plus collate,
and beats worker processes, so the DataLoader gets a batch sampler and no collate function.
"""

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from datamodules.errors import DataError


class WindowDataset(Dataset):
    """Every stride-1 window of `inputs` (lookback rows) followed by `targets` (horizon rows).

    Window i covers input rows [i, i + lookback) and target rows [i + lookback, i + lookback + horizon).
    `inputs` is [T, C], `targets` is [T, K]; both stay one tensor each, windows are `unfold` views.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, lookback: int, horizon: int) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"inputs have {len(inputs)} rows but targets {len(targets)}")
        self.lookback, self.horizon = lookback, horizon
        self.n_windows = len(inputs) - lookback - horizon + 1
        if self.n_windows < 1:
            raise DataError(f"{len(inputs)} rows are too few for lookback {lookback} + horizon {horizon}")
        self.x = inputs[: len(inputs) - horizon].unfold(0, lookback, 1)  # [N, C, L] view
        self.y = targets[lookback:].unfold(0, horizon, 1)  # [N, K, H] view

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, index: list[int] | Tensor) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(index)
        # One gather per batch; contiguous so models and metrics can view() it freely.
        return self.x[index].transpose(-1, -2).contiguous(), self.y[index].transpose(
            -1, -2
        ).contiguous()  # [B, L, C], [B, H, K]


def batch_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A DataLoader that asks the dataset for whole batches; shuffling is seeded so runs repeat exactly."""
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)
