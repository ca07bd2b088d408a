"""Verified downloads: a real HTTP server on 127.0.0.1 serves good and corrupted copies."""

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest

from datamodules import DATASETS, benchmarks, ett, stock, text
from datamodules.download import Source, download_file, ensure_file, git_blob_id
from datamodules.errors import DataError
from datamodules.fingerprint import sha256_file
from datamodules.video import gestures, hmdb51
from datamodules.video.datamodule import ClipOptions
from experiments.cli import main
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


# --- the standard benchmarks, sms and the video data -----------------------------------------------------------


def test_etth2_prepare_data_fetches_its_pinned_file(server: Server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(ett.SOURCES, "ETTh2.csv", Source(f"{server.url}/good.csv", GOOD_SHA))
    ett.Etth2DataModule(ett.EttOptions(root=str(tmp_path))).prepare_data()
    assert (tmp_path / "ett" / "ETTh2.csv").read_bytes() == GOOD and server.requests == ["/good.csv"]


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_git_blob_id_is_the_id_in_the_upstream_commits_tree(shared_data: Path) -> None:
    # ETTh1.csv is blob a52c4925... in zhouhaoyi/ETDataset's tree at the pinned commit (git ls-tree).
    assert git_blob_id(shared_data / "ett" / "ETTh1.csv") == "a52c4925778c07c1ef1a2cf6fd01594919717d9e"


@pytest.mark.parametrize("served", ["good.csv", "corrupted.csv"])
def test_ettm1_is_verified_by_its_git_blob_id(served: str, server: Server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(ett.SOURCES, "ETTm1.csv", Source(f"{server.url}/{served}", git_blob=git_blob(GOOD)))
    module = ett.Ettm1DataModule(ett.EttOptions(root=str(tmp_path)))
    dest = tmp_path / "ett" / "ETTm1.csv"
    if served == "good.csv":
        module.prepare_data()
        assert dest.read_bytes() == GOOD
        dest.write_bytes(CORRUPTED)  # a changed copy is refused by its git blob id too
        with pytest.raises(DataError, match=f"git blob id is {git_blob(CORRUPTED)}, but the published file has"):
            module.prepare_data()
    else:
        with pytest.raises(DataError, match=f"expected git blob id {git_blob(GOOD)}, got {git_blob(CORRUPTED)}"):
            module.prepare_data()
        assert not dest.exists()


@pytest.mark.parametrize("name", ["exchange", "ili"])
@pytest.mark.parametrize("served", ["good.csv", "corrupted.csv"])
def test_benchmark_prepare_data_saves_only_the_verified_bytes(
    name: str, served: str, server: Server, tmp_path: Path, monkeypatch
) -> None:
    module = benchmarks.MODULES[name]
    pinned = replace(module.benchmark, source=Source(f"{server.url}/{served}", GOOD_SHA))
    monkeypatch.setattr(module, "benchmark", pinned)
    datamodule = module(module.Options(root=str(tmp_path)))
    dest = datamodule.data_files()[0]
    if served == "good.csv":
        datamodule.prepare_data()
        assert dest.read_bytes() == GOOD
    else:
        with pytest.raises(DataError, match="is corrupted"):
            datamodule.prepare_data()
        assert not dest.exists()


def serve_sms(server: Server, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(shared_data / "text" / "SMSSpamCollection", server.folder / "SMSSpamCollection")
    published = text.SOURCES["SMSSpamCollection"]
    monkeypatch.setitem(text.SOURCES, "SMSSpamCollection", Source(f"{server.url}/SMSSpamCollection", published.sha256))


def test_sms_prepare_data_fetches_the_collection_once(server, tmp_path, shared_data, monkeypatch) -> None:
    serve_sms(server, shared_data, monkeypatch)
    module = text.TextDataModule(text.TextOptions(root=str(tmp_path)))
    module.prepare_data()
    module.prepare_data()
    assert sha256_file(tmp_path / "text" / "SMSSpamCollection") == text.SOURCES["SMSSpamCollection"].sha256
    assert server.requests == ["/SMSSpamCollection"]


def test_a_corrupted_sms_download_is_refused(server: Server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(text.SOURCES, "SMSSpamCollection", Source(f"{server.url}/corrupted.csv", GOOD_SHA))
    with pytest.raises(DataError, match="corrupted"):
        text.TextDataModule(text.TextOptions(root=str(tmp_path))).prepare_data()
    assert not (tmp_path / "text" / "SMSSpamCollection").exists()


def test_sms_from_the_users_own_path_fetches_nothing(server: Server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(text.SOURCES, "SMSSpamCollection", Source(f"{server.url}/good.csv", GOOD_SHA))
    text.TextDataModule(text.TextOptions(root=str(tmp_path), path=str(tmp_path / "mine.tsv"))).prepare_data()
    assert server.requests == []


def test_hmdb51_samples_fetch_all_six_clips_by_their_percent_encoded_names(
    server: Server, tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    for name, source in list(hmdb51.SOURCES.items()):
        shutil.copy(shared_data / "video" / "hmdb51_samples" / name, server.folder / name)
        monkeypatch.setitem(hmdb51.SOURCES, name, Source(f"{server.url}/{quote(name)}", source.sha256))
    hmdb51.Hmdb51Samples(ClipOptions(root=str(tmp_path))).prepare_data()
    for name, source in hmdb51.SOURCES.items():
        assert sha256_file(tmp_path / "video" / "hmdb51_samples" / name) == source.sha256, name
    assert len(server.requests) == 6


def test_a_corrupted_clip_is_refused_naming_its_url(server: Server, tmp_path: Path, monkeypatch) -> None:
    name = next(iter(hmdb51.SOURCES))
    monkeypatch.setitem(hmdb51.SOURCES, name, Source(f"{server.url}/corrupted.csv", hmdb51.SOURCES[name].sha256))
    with pytest.raises(DataError, match=f"download of {server.url}/corrupted.csv is corrupted"):
        hmdb51.Hmdb51Samples(ClipOptions(root=str(tmp_path))).prepare_data()
    assert not (tmp_path / "video" / "hmdb51_samples" / name).exists()


def test_gestures_fetch_each_of_the_74_recordings(server, tmp_path, shared_data, monkeypatch) -> None:
    shutil.copytree(shared_data / "video" / "ground_guide_pose" / "images", server.folder / "images")
    for name, source in list(gestures.SOURCES.items()):
        monkeypatch.setitem(
            gestures.SOURCES, name, Source(f"{server.url}/images/{name}/gesture_data.csv", source.sha256)
        )
    module = gestures.Gestures(gestures.GestureOptions(root=str(tmp_path)))
    module.prepare_data()
    assert len(server.requests) == 74 and len(module.files()) == 74
    for path, source in module.sources().items():
        assert sha256_file(path) == source.sha256, path


def test_text_and_video_sources_point_at_the_provenance_commits() -> None:
    assert (
        "/b8a2ed94a03f64acc822021caea9d85c1a8fc583/smsspamcollection/SMSSpamCollection"
        in text.SOURCES["SMSSpamCollection"].url
    )
    commits = {source.url.split("/")[5] for source in hmdb51.SOURCES.values()}
    assert commits == {"ae9d25a210332a2a58aabecf9f106ef481aeb747", "379f0f6a760397da7478de95f34a1da8351693fb"}
    assert len(gestures.SOURCES) == 74
    assert all("/edacdd38b03fff57e53282c31b7f43925d3c012a/images/" in s.url for s in gestures.SOURCES.values())
    assert ett.SOURCES["ETTh2.csv"].url.endswith("/1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small/ETTh2.csv")


def test_shared_text_and_video_copies_match_the_registered_hashes(shared_data: Path) -> None:
    assert sha256_file(shared_data / "text" / "SMSSpamCollection") == text.SOURCES["SMSSpamCollection"].sha256
    for name, source in hmdb51.SOURCES.items():
        assert sha256_file(shared_data / "video" / "hmdb51_samples" / name) == source.sha256, name
    images = shared_data / "video" / "ground_guide_pose" / "images"
    for name, source in gestures.SOURCES.items():
        assert sha256_file(images / name / "gesture_data.csv") == source.sha256, name


@pytest.mark.parametrize("name", ["etth2", "exchange", "ili"])  # the benchmarks with a pinned sha256
def test_shared_benchmark_copies_match_the_registered_hashes(name: str, shared_data: Path) -> None:
    module = DATASETS[name](DATASETS[name].Options(root=str(shared_data)))
    for path, source in module.sources().items():
        if not path.exists():
            pytest.skip(f"{path} is not in the shared data")
        assert sha256_file(path) == source.sha256


@pytest.mark.slow
def test_stw_train_on_sms_downloads_into_an_empty_data_folder(
    server: Server, tmp_path: Path, shared_data: Path, tracking_uri: str, monkeypatch
) -> None:
    serve_sms(server, shared_data, monkeypatch)
    empty = tmp_path / "fresh"
    monkeypatch.setenv("STW_DATA_DIR", str(empty))
    args = ["train", "--data", "sms", "--model", "cnn", "model.num_layers=1", "model.channels=8", "data.max_len=32",
            "task.embed_dim=16", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2", "--tracking-uri", tracking_uri, "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert server.requests == ["/SMSSpamCollection"]
    assert sha256_file(empty / "text" / "SMSSpamCollection") == text.SOURCES["SMSSpamCollection"].sha256
