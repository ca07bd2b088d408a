"""The dataset registry: name -> datamodule class. Each module registers itself on import."""

from datamodules.base import DataOptions, StwDataModule
from datamodules.errors import DataError

DATASETS: dict[str, type[StwDataModule]] = {}


def register_dataset(name: str):
    """Class decorator: make a datamodule available as `stw train --data NAME`."""

    def add(cls: type[StwDataModule]) -> type[StwDataModule]:
        DATASETS[name] = cls
        return cls

    return add


def dataset_class(name: str) -> type[StwDataModule]:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; registered datasets: {', '.join(sorted(DATASETS))} (your own "
                        "datasets come in through plugins: see --plugin in `stw --help`)")  # fmt: skip
    return DATASETS[name]


def build_datamodule(name: str, options: dict | DataOptions | None = None) -> StwDataModule:
    cls = dataset_class(name)
    if not isinstance(options, DataOptions):
        options = cls.Options(**(options or {}))
    return cls(options)


# One line per dataset module; importing it registers it.
from datamodules import (
    benchmarks,
    ett,
    stock,
    stock_direction,
    table,
    text,
    video,
)

__all__ = [
    "DATASETS",
    "DataError",
    "DataOptions",
    "StwDataModule",
    "build_datamodule",
    "dataset_class",
    "register_dataset",
]
