"""Multi-window validation: the validation period cut into K consecutive blocks of forecast windows, scored apart.

One validation MSE over the whole period lets a long calm stretch outweigh a short turbulent one, and a model
chosen by it can overfit that one mix. With `task.val_windows = K` (K >= 2) the N validation windows, ordered
by their forecast origin (window i looks back over rows [i, i + L) of the validation range and forecasts rows
[i + L, i + L + H)), are cut into K rolling-origin blocks:

    block k (k = 1..K) holds windows i with  (k - 1) * N // K  <=  i  <  k * N // K

so the blocks are consecutive, differ in size by one window at most, and cover every window exactly once.
`val_mse_w<k>` is the MSE over block k's windows (every step ahead and target of each), and the selection score
`val_mse_windows` is the plain mean of the K block MSEs: every block weighs the same, whatever its length or
its variance.
"""

import torch
from torch import Tensor
from torchmetrics import Metric

from datamodules.errors import ConfigError

WINDOWS_METRIC = "val_mse_windows"


def block_borders(windows: int, blocks: int) -> list[int]:
    """The K + 1 borders of the blocks over `windows` validation windows: block k is [borders[k-1], borders[k])."""
    if blocks > windows:
        raise ConfigError(f"task.val_windows={blocks} asks for more validation blocks than the {windows} validation "
                          "windows there are; choose at most that many, or fewer for blocks of several windows")  # fmt: skip
    return [k * windows // blocks for k in range(blocks + 1)]


class BlockMSE(Metric):
    """Squared errors summed per block of validation windows; sums, not means, so data-parallel shares add up."""

    full_state_update = False

    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.add_state("squared", torch.zeros(blocks, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(blocks, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, y: Tensor, first: int, windows: int) -> None:
        """A batch [B, H, K] of consecutive windows `first`..`first + B - 1` of the `windows` validation windows."""
        borders = torch.tensor(block_borders(windows, self.blocks), device=pred.device)
        index = torch.arange(first, first + len(pred), device=pred.device)
        block = torch.bucketize(index, borders[1:], right=True)  # i < borders[k] first at block k (0-based)
        errors = (pred.detach().double() - y.double()).pow(2).flatten(1)
        self.squared.index_add_(0, block, errors.sum(1))
        self.count.index_add_(0, block, torch.full_like(errors[:, 0], errors.shape[1]))

    def compute(self) -> Tensor:
        """Each block's MSE; a block that saw no window (validation cut short by limit_val_batches) is refused."""
        if (empty := torch.nonzero(self.count == 0).flatten()).numel():
            raise ConfigError(f"validation block {int(empty[0]) + 1} of task.val_windows={self.blocks} got no windows: "
                              "trainer.limit_val_batches cuts the validation period short; keep it at 1.0 with "
                              "val_windows, or use fewer blocks")  # fmt: skip
        return self.squared / self.count

    def scores(self) -> dict[str, Tensor]:
        """val_mse_w1..K and their mean, val_mse_windows, as float32 scalars for logging."""
        per_block = self.compute().float()
        return {**{f"val_mse_w{k}": v for k, v in enumerate(per_block, start=1)}, WINDOWS_METRIC: per_block.mean()}
