"""Sliding windows as zero-copy views, served a whole batch at a time, and each data-parallel process's share.

On 2 CPU cores, one fancy-index per batch over an unfolded tensor beats per-item __getitem__ plus collate,
and beats worker processes, so the DataLoader gets a batch sampler and no collate function.

Under data-parallel training (trainer.devices > 1) every process builds the same loaders and takes its share
(Lightning's DistributedSampler is off: it would split single items and pad with repeats). Training batches are
global: each rank takes every world-th item of each one, so the ranks step together and DDP averages the very
gradient one process would take on the whole batch. Evaluation sets are cut into one contiguous block per rank, in
order, so every item is scored exactly once and gathered results come back in dataset order.
"""

import hashlib
from collections.abc import Iterable, Iterator, Sized

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from datamodules.errors import DataError

Shard = tuple[int, int]  # (rank, world size) of one process in a data-parallel group


def process_shard() -> Shard:
    """This process's (rank, world size) in the running data-parallel group; (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_seed(seed: int, rank: int) -> int:
    """The seed of one rank's random draws: the seed itself on rank 0, so one process repeats a single-process
    run, and a stream of its own on every other rank. 32 bits, as torch's CPU generator keeps no more of a seed."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{rank}".encode()).digest()[:4], "little")


def check_shareable(items: int, shard: Shard, split: str) -> None:
    if shard[1] > 1 and items < shard[1]:
        raise DataError(f"the {split} split has {items} items, fewer than the {shard[1]} data-parallel processes: every process "
                        "needs one; use fewer trainer.devices or more data")  # fmt: skip


class GlobalBatchSlices(Sampler[Tensor]):
    """One rank's slice of every batch of `batches`, which every rank draws in the same order (the same seed).

    All ranks take the same number of steps and together see each item once per epoch, nothing repeated. The one
    batch that may be short (the last of a BatchSampler, of LengthBuckets' last pool) joins a neighbour when it
    has fewer items than ranks, so that no rank ever gets an empty batch.
    """

    def __init__(
        self, batches: Iterable[list[int] | Tensor] | Sized, items: int, batch_size: int, shard: Shard
    ) -> None:
        check_shareable(items, shard, "train")
        self.batches, self.items, self.batch_size, (self.rank, self.world) = batches, items, batch_size, shard

    def __len__(self) -> int:
        return len(self.batches) - (0 < self.items % self.batch_size < self.world)

    def __iter__(self) -> Iterator[Tensor]:
        batches = [torch.as_tensor(batch) for batch in self.batches]
        for i in reversed([i for i, batch in enumerate(batches) if len(batch) < self.world]):
            short = batches.pop(i)
            neighbour = max(i - 1, 0)
            batches[neighbour] = torch.cat([batches[neighbour], short])
        for batch in batches:
            yield batch[self.rank :: self.world]


def rank_block(items: int, shard: Shard) -> range:
    """One rank's contiguous block of an evaluation set's items; the blocks differ in size by one at most."""
    rank, world = shard
    return range(rank * items // world, (rank + 1) * items // world)


class WindowDataset(Dataset):
    """Every stride-1 window of `inputs` (lookback rows) followed by `targets` (horizon rows).

    Window i covers input rows [i, i + lookback) and target rows [i + lookback, i + lookback + horizon).
    `inputs` is [T, C], `targets` is [T, K]; both stay one tensor each, windows are `unfold` views. `first_row`
    is the number of input row 0 in the whole series (where the split starts): a batch also gives each window's
    first row there, the phase a residual cycle (task.cycle_len) reads.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, lookback: int, horizon: int, first_row: int = 0) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"inputs have {len(inputs)} rows but targets {len(targets)}")
        self.lookback, self.horizon, self.first_row = lookback, horizon, first_row
        self.n_windows = len(inputs) - lookback - horizon + 1
        if self.n_windows < 1:
            raise DataError(f"{len(inputs)} rows are too few for lookback {lookback} + horizon {horizon}")
        self.x = inputs[: len(inputs) - horizon].unfold(0, lookback, 1)  # [N, C, L] view
        self.y = targets[lookback:].unfold(0, horizon, 1)  # [N, K, H] view

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, index: list[int] | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, L, C], y [B, H, K] and each window's first row in the whole series [B]."""
        index = torch.as_tensor(index)
        # One gather per batch; contiguous so models and metrics can view() it freely.
        x, y = self.x[index].transpose(-1, -2).contiguous(), self.y[index].transpose(-1, -2).contiguous()
        return x, y, index + self.first_row


def batch_loader(
    dataset: Dataset, batch_size: int, split: str, seed: int = 0, shard: Shard | None = None
) -> DataLoader:
    """A DataLoader that asks the dataset for whole batches of this process's share (`shard`, default the running
    group's); the train split is shuffled, seeded so runs repeat exactly."""
    shard = shard or process_shard()
    if split == "train":
        order = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        sampler = GlobalBatchSlices(BatchSampler(order, batch_size, drop_last=False), len(dataset), batch_size, shard)
    else:
        check_shareable(len(dataset), shard, split)
        sampler = BatchSampler(rank_block(len(dataset), shard), batch_size, drop_last=False)
    return DataLoader(dataset, sampler=sampler, batch_size=None)
