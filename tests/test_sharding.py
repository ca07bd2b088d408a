"""Each data-parallel process's share of the data, with a fake world size and rank (no processes): every item of
an epoch seen exactly once over all ranks, the ranks stepping together through the single-process global batches,
evaluation sets cut into ordered blocks, nothing padded or repeated, and each rank's own random draws."""

import copy
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader

from datamodules import build_datamodule
from datamodules.base import StwDataModule
from datamodules.errors import DataError
from datamodules.text import TextDataModule, TextOptions
from datamodules.windows import GlobalBatchSlices, rank_block, rank_seed
from experiments.train import SeedPerRank

FakeGroup = Callable[[int, int], None]


@pytest.fixture()
def fake_group(monkeypatch: pytest.MonkeyPatch) -> FakeGroup:
    """Makes this process look like rank `rank` of a `world`-process group to everything that asks torch."""

    def join(rank: int, world: int) -> None:
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_rank", lambda group=None: rank)
        monkeypatch.setattr(dist, "get_world_size", lambda group=None: world)

    return join


@pytest.fixture(scope="module")
def ett(shared_data: Path) -> StwDataModule:
    # 8569 training windows: 8569 % 64 = 57, so the last global batch is short but has an item for every rank.
    module = build_datamodule("ett", {"root": str(shared_data), "lookback": 48, "horizon": 24, "shuffle_seed": 3})
    module.setup()
    return module


@pytest.fixture(scope="module")
def sms(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> StwDataModule:
    """800 real messages in length buckets, whose one short batch lands anywhere in the epoch's order."""
    path = tmp_path_factory.mktemp("sms") / "slice.tsv"
    lines = (shared_data / "text" / "SMSSpamCollection").read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:800]))
    module = TextDataModule(TextOptions(path=str(path), batch_size=16, shuffle_seed=5))
    module.setup()
    return module


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> StwDataModule:
    options = {"n_clips": 10, "frame_size": 16, "n_frames": 6, "clip_len": 4, "batch_size": 6, "shuffle_seed": 2,
               "cache_dir": str(tmp_path_factory.mktemp("cache"))}  # fmt: skip
    module = build_datamodule("moving-shapes", options)
    module.setup()
    return module


DATAMODULES = ["ett", "sms", "shapes"]


def batches(loader: DataLoader) -> list[Tensor]:
    """The index batches a loader asks its dataset for."""
    return [torch.as_tensor(batch) for batch in loader.sampler]


def per_rank(datamodule: StwDataModule, loader: str, world: int, fake_group: FakeGroup) -> list[list[Tensor]]:
    """Each rank's batches, every rank building its loader afresh as its own process would."""
    shares = []
    for rank in range(world):
        fake_group(rank, world)
        built = getattr(datamodule, loader)()
        shares.append(batches(built))
        assert len(built) == len(shares[-1]), "Lightning plans the epoch with len(loader)"
    return shares


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", DATAMODULES)
def test_each_training_item_is_seen_once_an_epoch_over_all_ranks(name, world, fake_group, request):
    datamodule = request.getfixturevalue(name)
    shares = per_rank(datamodule, "train_dataloader", world, fake_group)
    seen = torch.cat([batch for share in shares for batch in share])
    assert sorted(seen.tolist()) == list(range(len(datamodule.datasets["train"])))  # all, and none twice
    assert len({len(share) for share in shares}) == 1, "every rank takes the same number of steps"
    assert all(len(batch) > 0 for share in shares for batch in share)


@pytest.mark.parametrize("name", DATAMODULES)
def test_the_ranks_split_the_very_batches_one_process_would_train_on(name, fake_group, request):
    """So DDP's averaged gradient is the single-process batch's: data.batch_size stays the global batch."""
    datamodule = request.getfixturevalue(name)
    [alone] = per_rank(datamodule, "train_dataloader", 1, fake_group)
    shares = per_rank(datamodule, "train_dataloader", 2, fake_group)
    for step, whole in enumerate(alone):
        together = torch.cat([share[step] for share in shares])
        assert sorted(together.tolist()) == sorted(whole.tolist()), step
        assert abs(len(shares[0][step]) - len(shares[1][step])) <= 1


@pytest.mark.parametrize("split", ["val", "test"])
@pytest.mark.parametrize("name", DATAMODULES)
def test_evaluation_sets_are_cut_into_ordered_blocks_that_score_every_item_once(name, split, fake_group, request):
    """Nothing is padded with repeats, as Lightning's DistributedSampler would, and gathering in rank order gives
    back the set in its own order (the classification report's predictions)."""
    datamodule = request.getfixturevalue(name)
    shares = per_rank(datamodule, f"{split}_dataloader", 3, fake_group)
    assert torch.cat([batch for share in shares for batch in share]).tolist() == list(
        range(len(datamodule.datasets[split]))
    )
    assert all(len(share) > 0 for share in shares)


def test_a_last_batch_with_fewer_items_than_ranks_joins_the_one_before():
    global_batches = BatchSampler(range(9), batch_size=4, drop_last=False)  # 4 + 4 + 1 items
    shares = [list(GlobalBatchSlices(global_batches, 9, 4, (rank, 2))) for rank in range(2)]
    assert [len(share) for share in shares] == [2, 2] == [len(GlobalBatchSlices(global_batches, 9, 4, (0, 2)))] * 2
    assert [batch.tolist() for batch in shares[0]] == [[0, 2], [4, 6, 8]]
    assert [batch.tolist() for batch in shares[1]] == [[1, 3], [5, 7]]


def test_a_short_batch_first_in_the_order_joins_the_next():
    shuffled = [[8], [0, 1, 2, 3], [4, 5, 6, 7]]  # as LengthBuckets may order them
    shares = [[batch.tolist() for batch in GlobalBatchSlices(shuffled, 9, 4, (rank, 2))] for rank in range(2)]
    assert shares == [[[0, 2, 8], [4, 6]], [[1, 3], [5, 7]]]


def test_a_split_smaller_than_the_world_is_refused_by_name():
    with pytest.raises(DataError, match="the train split has 2 items, fewer than the 3 data-parallel processes"):
        GlobalBatchSlices([[0, 1]], 2, 4, (0, 3))


def test_evaluation_blocks_differ_in_size_by_one_at_most():
    blocks = [rank_block(10, (rank, 4)) for rank in range(4)]
    assert [list(block) for block in blocks] == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]


def test_rank_zero_draws_as_one_process_and_every_other_rank_its_own_clip_offsets(shapes, fake_group):
    train = shapes.datasets["train"]
    index = torch.arange(6)

    def offsets_on(rank: int) -> Tensor:
        fake_group(rank, 2)
        fresh = copy.copy(train)
        fresh.generator = None  # as in a fresh process
        return fresh[index][0]

    alone = copy.copy(train)
    alone.generator = None
    assert torch.equal(offsets_on(0), alone[index][0])
    assert not torch.equal(offsets_on(1), offsets_on(0))


def test_every_rank_but_zero_reseeds_its_dropout_and_noise_when_fitting_starts():
    def first_draws(rank: int) -> Tensor:
        torch.manual_seed(0)
        SeedPerRank(0).on_fit_start(SimpleNamespace(global_rank=rank), None)
        return torch.randn(3)

    torch.manual_seed(0)
    untouched = torch.randn(3)
    assert torch.equal(first_draws(0), untouched)
    assert torch.equal(first_draws(1), torch.randn(3, generator=torch.Generator().manual_seed(rank_seed(0, 1))))
    assert not torch.equal(first_draws(1), untouched)
