"""What every registered datamodule offers the rest of the workbench.

A datamodule is built from one options dataclass (its `Options`), so the whole data config of a run is one
flat, printable, savable record. After `setup()` it reports the shapes a model needs (`spec`), a content
`fingerprint()`, and its fitted preprocessing through `state_dict()` so predict and reproduce can reuse it.
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from datamodules.download import Source, fetch_missing
from datamodules.specs import Spec
from datamodules.windows import batch_loader


@dataclass
class DataOptions:
    """Options every dataset has.

    Args:
        root: data folder; default $STW_DATA_DIR, else ./data.
        batch_size: windows or items per batch.
        download: fetch missing files from the dataset's public source (checked against sha256).
        seed: seeds what the data is (generated clips, the random split), so seed-to-seed spread of runs
            measures training, not data.
        shuffle_seed: the run's seed, passed down by the run (not a CLI option): seeds only the training batch
            order and the draws made per training batch (clip offsets, crops, flips), never what the data is.
    """

    root: str | None = None
    batch_size: int = 64
    download: bool = True
    seed: int = 0
    shuffle_seed: int = 0


# Options that say where or how fast data is read, or in which order training sees it, never what the tensors
# hold: kept out of fingerprints.
NON_SHAPING_OPTIONS = frozenset({"root", "batch_size", "download", "shuffle_seed"})


class StwDataModule(pl.LightningDataModule):
    """Base for registered datamodules. Subclasses set `Options`, `task`, `input_kind` and implement `setup`, which
    fills `datasets` ("train", "val", "test"); each dataset answers a whole batch of indices at once."""

    Options: ClassVar[type[DataOptions]] = DataOptions
    task: ClassVar[str]  # "forecast" or "classify": which LightningModule trains on it
    input_kind: ClassVar[str]  # what an item holds ("values", "tokens", ...): which model stem reads it
    # Why this dataset's test scores are not an evaluation (None for real datasets).
    smoke_check: ClassVar[str | None] = None
    datasets: dict[str, Dataset]

    def __init__(self, options: DataOptions) -> None:
        super().__init__()
        self.options = options

    def sources(self) -> dict[Path, Source]:
        """The data files that have a known public source, for `download=True`."""
        return {}

    def prepare_data(self) -> None:
        if self.options.download:
            fetch_missing(self.sources())

    def train_dataloader(self) -> DataLoader:
        return batch_loader(self.datasets["train"], self.options.batch_size, "train", seed=self.options.shuffle_seed)

    def val_dataloader(self) -> DataLoader:
        return batch_loader(self.datasets["val"], self.options.batch_size, "val")

    def test_dataloader(self) -> DataLoader:
        return batch_loader(self.datasets["test"], self.options.batch_size, "test")

    def shaping_options(self) -> dict[str, Any]:
        """The options that change the tensors; part of the fingerprint."""
        return {k: v for k, v in asdict(self.options).items() if k not in NON_SHAPING_OPTIONS}

    def fingerprint(self) -> dict[str, Any]:
        """sha256 of the raw files plus the shaping options (see datamodules.fingerprint)."""
        raise NotImplementedError

    @property
    def spec(self) -> Spec:
        """What a model needs to know about the tensors (see datamodules.specs)."""
        raise NotImplementedError
