"""Verified downloads: a real HTTP server on 127.0.0.1 serves good and corrupted copies."""

import hashlib
import shutil
from pathlib import Path

import pytest

from datamodules import ett, stock
from datamodules.download import Source, download_file, ensure_file
from datamodules.errors import DataError
from datamodules.fingerprint import sha256_file
from tests.local_http import Server, serving

GOOD = b"date,value\n2020-01-01,1.0\n" * 1000
CORRUPTED = GOOD[:-2] + b"9\n"
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


@pytest.fixture()
def server(tmp_path: Path):
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "good.csv").write_bytes(GOOD)
    (folder / "corrupted.csv").write_bytes(CORRUPTED)
    with serving(folder) as served:
        yield served


def test_download_saves_verified_bytes_and_leaves_no_temporary_file(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "good.csv"
    assert download_file(f"{server.url}/good.csv", dest, GOOD_SHA) == dest
    assert dest.read_bytes() == GOOD
    assert list(dest.parent.iterdir()) == [dest]


def test_corrupted_download_raises_naming_url_and_both_hashes_and_saves_nothing(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "good.csv"
    url = f"{server.url}/corrupted.csv"
    with pytest.raises(DataError) as error:
        download_file(url, dest, GOOD_SHA)
    message = str(error.value)
    assert url in message and GOOD_SHA in message and hashlib.sha256(CORRUPTED).hexdigest() in message
    assert list(dest.parent.iterdir()) == []


def test_unreachable_file_raises_data_error_and_saves_nothing(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "missing.csv"
    with pytest.raises(DataError, match="cannot download .*missing.csv"):
        download_file(f"{server.url}/missing.csv", dest, GOOD_SHA)
    assert list(dest.parent.iterdir()) == []


def test_existing_file_with_the_right_hash_is_not_fetched_again(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "good.csv"
    ensure_file(f"{server.url}/good.csv", dest, GOOD_SHA)
    ensure_file(f"{server.url}/good.csv", dest, GOOD_SHA)
    assert server.requests == ["/good.csv"]


def test_existing_file_with_a_wrong_hash_is_an_error_telling_to_delete_it(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "good.csv"
    dest.write_bytes(CORRUPTED)
    with pytest.raises(DataError, match="Delete it"):
        ensure_file(f"{server.url}/good.csv", dest, GOOD_SHA)
    assert server.requests == []
    assert dest.read_bytes() == CORRUPTED


def test_ett_prepare_data_fetches_the_missing_file_from_its_source(
    server: Server, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(shared_data / "ett" / "ETTh1.csv", server.folder / "ETTh1.csv")
    published = ett.SOURCES["ETTh1.csv"]
    monkeypatch.setitem(ett.SOURCES, "ETTh1.csv", Source(f"{server.url}/ETTh1.csv", published.sha256))
    ett.EttDataModule(ett.EttOptions(root=str(tmp_path / "root"))).prepare_data()
    assert sha256_file(tmp_path / "root" / "ett" / "ETTh1.csv") == published.sha256


def test_stock_prepare_data_fetches_missing_tickers_from_their_sources(
    server: Server, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for ticker in ("spy", "ko"):
        shutil.copy(shared_data / "stock" / f"{ticker}.us.txt", server.folder / f"{ticker}.us.txt")
        published = stock.SOURCES[ticker]
        monkeypatch.setitem(stock.SOURCES, ticker, Source(f"{server.url}/{ticker}.us.txt", published.sha256))
    stock.StockDataModule(stock.StockOptions(tickers=["SPY", "ko"], root=str(tmp_path))).prepare_data()
    assert sorted(server.requests) == ["/ko.us.txt", "/spy.us.txt"]
    assert sha256_file(tmp_path / "stock" / "spy.us.txt") == stock.SHA256["spy"]


def test_published_sources_point_at_the_pinned_upstream_commits() -> None:
    assert ett.SOURCES["ETTh1.csv"].url.endswith("/1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small/ETTh1.csv")
    assert stock.SOURCES["spy"].url.endswith("/30d766fa2b865b8c55bc8e1a246b9f93916b882c/Data/ETFs/spy.us.txt")
    assert stock.SOURCES["ibm"].url.endswith("/Data/Stocks/ibm.us.txt")


def test_shared_copies_match_the_published_hashes(shared_data: Path) -> None:
    assert sha256_file(shared_data / "ett" / "ETTh1.csv") == ett.SOURCES["ETTh1.csv"].sha256
    for ticker, source in stock.SOURCES.items():
        assert sha256_file(shared_data / "stock" / f"{ticker}.us.txt") == source.sha256, ticker
