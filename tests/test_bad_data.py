"""Every bad input a clear error: one case a row, the input, the exception it raises, and what its message says.

Each case builds a tiny input under tmp_path (a few use a slice of the real data) and reads it the way `stw train`
or `stw predict` would. The message must name what is wrong (the file, the column, the line, the value) and the
fix; nothing bad may be read silently.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from datamodules import ett, fingerprint
from datamodules.errors import ConfigError, DataError, StwError
from datamodules.ett import EttDataModule, EttOptions
from datamodules.fingerprint import cached_sha256
from datamodules.paths import data_root
from datamodules.stock import SOURCES, StockDataModule, StockOptions
from datamodules.text import TextDataModule, TextOptions
from datamodules.video.datamodule import FolderOptions, VideoFolder
from datamodules.video.gestures import KEYPOINT_COLUMNS, GestureOptions, Gestures
from datamodules.video.moving_shapes import MovingShapes, MovingShapesOptions
from experiments.config import parse_run_args
from experiments.predict import PREDICTORS

Reader = Callable[[Path], object]


@dataclass(frozen=True)
class Bad:
    """An input (`read` builds it under a folder and reads it), the error it must raise and what the message says."""

    read: Reader
    error: type[StwError]
    says: tuple[str, ...]


def real(relative: str) -> Path:
    """A file of the real data ($STW_DATA_DIR, set for every test by conftest), or a skip without it."""
    path = data_root() / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path}: set STW_DATA_DIR to the shared data folder")
    return path


def read_only(folder: Path) -> Path:
    """`folder`, created with mode r-x as the shared data folder has (the mode bits count even for root)."""
    folder.mkdir(mode=0o555)
    return folder


# --- stock ----------------------------------------------------------------------------------------------------------
STOOQ = "Date,Open,High,Low,Close,Volume,OpenInt"
YAHOO = "Date,Open,High,Low,Close,Adj Close,Volume"


def stock_file(folder: Path, cells: dict[tuple[int, str], str], header: str, move: Callable[[int], float]) -> Path:
    """abc.us.txt: 60 consistent trading days, prices `move(i)` above 10, with `cells` ((line, column) -> text)
    replaced; line 1 is the header."""
    names = header.split(",")
    lines = [header]
    for i, day in enumerate(pd.bdate_range("2001-01-01", periods=60)):
        base = 10 + move(i)
        values = {"Date": f"{day:%Y-%m-%d}", "Open": base, "High": base + 1, "Low": base - 1, "Close": base + 0.05,
                  "Adj Close": base, "Volume": 1000 + i, "OpenInt": 0}  # fmt: skip
        lines.append(",".join(str(cells.get((i + 2, name), values.get(name, 0))) for name in names))
    path = folder / "abc.us.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def stock(
    cells: dict[tuple[int, str], str] | None = None,
    header: str = STOOQ,
    move: Callable[[int], float] = lambda i: i % 7 / 10,
) -> Reader:
    def read(folder: Path) -> None:
        path = stock_file(folder, cells or {}, header, move)
        StockDataModule(StockOptions(paths=[str(path)], lookback=5, horizon=2)).setup()

    return read


def stock_bytes(content: bytes) -> Reader:
    def read(folder: Path) -> None:
        (folder / "abc.us.txt").write_bytes(content)
        StockDataModule(StockOptions(paths=[str(folder / "abc.us.txt")], lookback=5, horizon=2)).setup()

    return read


def options(cls: type, **values) -> Reader:
    return lambda folder: cls(**values)


def ticker_missing_from_read_only_folder(folder: Path) -> None:
    root = read_only(folder / "data")
    try:
        StockDataModule(StockOptions(tickers=["ko"], root=str(root))).prepare_data()
    finally:
        root.chmod(0o755)  # so pytest can delete tmp_path


def ticker_changed(folder: Path) -> None:
    """<folder>/stock/ko.us.txt: the real file with its first Close changed, read with download=false."""
    (folder / "stock").mkdir()
    content = real("stock/ko.us.txt").read_bytes().replace(b"0.6934,0.6975", b"0.6934,0.6970", 1)
    (folder / "stock" / "ko.us.txt").write_bytes(content)
    StockDataModule(StockOptions(tickers=["ko"], root=str(folder), download=False)).setup()


# --- ETT ------------------------------------------------------------------------------------------------------------
ETT_HEADER = "date," + ",".join(ett.CHANNELS)
TAMPERED_SHA = "eef28b0a2fa07d0c369bf07eef6502367aa8ae5a7226222dc65c1b58f2b457eb"  # the real file, first OT + 1e-13


def ett_small(header: str = ETT_HEADER, dates: dict[int, str] | None = None) -> Reader:
    """<folder>/ett/ETTh1.csv: 30 hourly rows (line 1 the header, `dates` replacing the date of some lines), read
    with allow_modified, as it is not the published file."""

    def read(folder: Path) -> None:
        rows = [f"{(dates or {}).get(i + 2, f'2016-07-01 {i % 24:02d}:00:00')},1,2,3,4,5,6,{i}" for i in range(20)]
        (folder / "ett").mkdir()
        (folder / "ett" / "ETTh1.csv").write_text("\n".join([header, *rows]) + "\n")
        EttDataModule(EttOptions(root=str(folder), download=False, allow_modified=True)).setup()

    return read


def tampered_ett(folder: Path) -> Path:
    """<folder>/ett/ETTh1.csv: the real file with its first OT value changed in the 13th decimal."""
    content = real("ett/ETTh1.csv").read_bytes().replace(b"30.5310001373291", b"30.5310001373292", 1)
    (folder / "ett").mkdir()
    (folder / "ett" / "ETTh1.csv").write_bytes(content)
    return folder / "ett" / "ETTh1.csv"


def ett_tampered(download: bool) -> Reader:
    def read(folder: Path) -> None:
        tampered_ett(folder)
        module = EttDataModule(EttOptions(root=str(folder), download=download))
        module.prepare_data()
        module.setup()

    return read


def ett_missing_from_read_only_folder(folder: Path) -> None:
    root = read_only(folder / "data")
    try:
        EttDataModule(EttOptions(root=str(root))).prepare_data()
    finally:
        root.chmod(0o755)


# --- text -----------------------------------------------------------------------------------------------------------
def rows(n: int = 40, sep: str = "\t") -> str:
    """Lines 1..n: distinct messages, every third one spam."""
    return "".join(f"{'spam' if i % 3 == 0 else 'ham'}{sep}message number {i}\n" for i in range(n))


def text(content: str, name: str = "data.tsv", **values) -> Reader:
    def read(folder: Path) -> None:
        (folder / name).write_text(content)
        TextDataModule(TextOptions(path=str(folder / name), **values)).setup()

    return read


def text_run(folder: Path) -> TextDataModule:
    """A text datamodule fitted on 40 messages, as `stw predict` rebuilds a run's."""
    (folder / "train.tsv").write_text(rows())
    datamodule = TextDataModule(TextOptions(path=str(folder / "train.tsv")))
    datamodule.setup()
    return datamodule


# --- video ----------------------------------------------------------------------------------------------------------
def empty_container(path: Path) -> None:
    """A video file whose stream holds no frame: the header is written, no packet is."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()


def audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def cut_short(path: Path) -> None:
    """The first third of a real HMDB51 clip (82 frames)."""
    whole = real("video/hmdb51_samples/6arrowswithin30seconds_shoot_bow_f_nm_np1_fr_med_3.avi").read_bytes()
    path.write_bytes(whole[: len(whole) // 3])


def broken_frame(path: Path) -> None:
    path.mkdir()
    (path / "frame_1.png").write_bytes(b"not a png")


def clips_folder(write: Callable[[Path], None], name: str, **values) -> Reader:
    """<folder>/clips/golf/`name` made by `write`, read with bad_files=error."""

    def read(folder: Path) -> None:
        (folder / "clips" / "golf").mkdir(parents=True)
        write(folder / "clips" / "golf" / name)
        VideoFolder(FolderOptions(clips_dir=str(folder / "clips"), bad_files="error", cache_dir=str(folder / "cache"),
                                  **values)).setup()  # fmt: skip

    return read


def shapes_without_a_writable_folder(folder: Path) -> None:
    root, cache = read_only(folder / "data"), read_only(folder / "cache")
    try:
        MovingShapes(MovingShapesOptions(root=str(root), cache_dir=str(cache), n_clips=2, n_frames=4)).setup()
    finally:
        for path in (root, cache):
            path.chmod(0o755)


def split_file(content: str) -> Reader:
    def read(folder: Path) -> None:
        (folder / "clips").mkdir()
        (folder / "clips" / "splits.csv").write_text(content)
        VideoFolder(FolderOptions(clips_dir=str(folder / "clips"), split_file="splits.csv")).setup()

    return read


def video_run(folder: Path) -> VideoFolder:
    """A video-folder datamodule with a run's fitted statistics, as `stw predict` rebuilds it."""
    datamodule = VideoFolder(FolderOptions(clips_dir=str(folder), resize=16))
    datamodule.load_state_dict(
        {"class_names": ["a", "b"], "mean": [0.5] * 3, "std": [0.2] * 3, "frame_shape": [3, 16, 16]}
    )
    return datamodule


def gestures_run(folder: Path) -> Gestures:
    datamodule = Gestures(GestureOptions())
    datamodule.load_state_dict({"mean": [0.0] * 16, "std": [1.0] * 16})
    return datamodule


# --- stw predict: a file of another kind than the run's -------------------------------------------------------------
def predict(run: str, write: Callable[[Path], Path]) -> Reader:
    """The predictor of a `run` ("sms", "ett", "video-folder", "gestures") given the file `write` makes."""
    datamodules = {
        "sms": text_run,
        "ett": lambda folder: EttDataModule(EttOptions(lookback=4, horizon=2)),
        "video-folder": video_run,
        "gestures": gestures_run,
    }

    def read(folder: Path) -> None:
        PREDICTORS[run](datamodules[run](folder), None, [write(folder)])  # the file is refused before the model runs

    return read


def written(name: str, content: str | bytes | Callable[[Path], None]) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return write


SPLIT_ROWS = "label,text,split\n" + "".join(
    f"{'ab'[i % 2]},text {i},{('train', 'val', 'test')[i % 3]}\n" for i in range(12)
)
KEYPOINTS_TWICE = ",".join([*KEYPOINT_COLUMNS, "left_wrist_x"]) + "\n" + "0," * 16 + "0\n"
PRICES = STOOQ + "\n" + "".join(f"2001-01-{d:02d},10,11,9,10.5,1000,0\n" for d in range(2, 12))
READINGS = ETT_HEADER + "\n" + "".join(f"2016-07-01 {h:02d}:00:00,1,2,3,4,5,6,7\n" for h in range(10))
VIDEO_BYTES = b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(200)


# fmt: off
CASES = {  # what each case shows: Bad(the input, the error, what its message says)
    # stock: bounds, the order of a day's prices, headers, dates, names
    "a High below the Low names the file, the line and both values":
        Bad(stock({(5, "High"): "9", (5, "Low"): "11"}), DataError,
            ("abc.us.txt", "High 9.0 at line 5 is below Low 11.0", "fix or remove that row")),
    "an Open above the High names the line and the day's range":
        Bad(stock({(6, "Open"): "12.5"}), DataError,
            ("abc.us.txt", "Open 12.5 at line 6 lies outside that day's range, Low 9.4 to High 11.4", "fix or remove")),
    "a Close below the Low names the line":
        Bad(stock({(7, "Close"): "1"}), DataError, ("abc.us.txt", "Close 1.0 at line 7 lies outside", "fix or remove")),
    "a price of 1e308 is refused naming the line and the ceiling":
        Bad(stock({(8, column): "1e308" for column in ("Open", "High", "Low", "Close")}), DataError,
            ("abc.us.txt", "Open is 1e+308 at line 8", "from 1e-06 to 1e+09", "fix or remove that row")),
    "a price of 1e-300 is refused naming the line and the floor":
        Bad(stock({(9, "Low"): "1e-300"}), DataError, ("abc.us.txt", "Low is 1e-300 at line 9", "from 1e-06 to 1e+09")),
    "a volume of 1e300 is refused naming the line and the ceiling":
        Bad(stock({(10, "Volume"): "1e300"}), DataError,
            ("abc.us.txt", "Volume is 1e+300 at line 10", "at most 1e+12", "fix or remove that row")),
    "a Yahoo Adj Close of 1e308 is refused before it scales the prices":
        Bad(stock({(4, "Adj Close"): "1e308"}, header=YAHOO), DataError,
            ("abc.us.txt", "Adj Close is 1e+308 at line 4", "fix or remove that row")),
    "prices that never change are refused: the baselines would be exact and skill undefined":
        Bad(stock(move=lambda i: 0.0), DataError,
            ("abc.us.txt", "the target 'abc_close' is 0 on every train row",
             "check that the file holds the real series")),
    "a header naming Volume twice is refused naming both fields":
        Bad(stock(header="Date,Open,High,Low,Close,Volume,Volume"), DataError,
            ("abc.us.txt", "line 1, the header, names column 'Volume' twice (fields 6 and 7)", "rename or delete one")),
    "a header line longer than the limit is refused before pandas reads it":
        Bad(stock(header=STOOQ + "," + ",".join(f"extra{i}" for i in range(20_000))), DataError,
            ("abc.us.txt", "line 1, the header, is longer than 100,000 characters", "line 1 must be the header")),
    "a header with more columns than the limit is refused":
        Bad(stock(header=STOOQ + "," + ",".join(f"x{i}" for i in range(10_000))), DataError,
            ("abc.us.txt", "has 10,007 columns, more than the 10,000", "line 1 must be the header")),
    "a date with a time-zone offset names the file, the line and the offset":
        Bad(stock({(3, "Date"): "2001-01-02T00:00:00+01:00"}), DataError,
            ("abc.us.txt", "'2001-01-02T00:00:00+01:00' in column 'Date' at line 3 has a time-zone offset, +01:00",
             "without an offset")),
    "dates whose offset changes with daylight saving are refused at the first one":
        Bad(stock({(2, "Date"): "2001-01-01 00:00:00-05:00", (3, "Date"): "2001-01-02 00:00:00-04:00"}), DataError,
            ("abc.us.txt", "at line 2 has a time-zone offset, -05:00 (2 of the 60 dates have one)", "one time zone")),
    "a UTC date written with Z is refused like any offset":
        Bad(stock({(4, "Date"): "2001-01-03T00:00Z"}), DataError, ("abc.us.txt", "at line 4", "offset, Z")),
    "binary data given as a price file is refused as no CSV":
        Bad(stock_bytes(VIDEO_BYTES), DataError, ("abc.us.txt", "line 1 holds binary data", "UTF-8 text file")),
    "a ticker that climbs out of the data folder is refused naming the option and data.paths":
        Bad(options(StockOptions, tickers=["../../outside/x"]), ConfigError,
            ("tickers='../../outside/x' is not a name", "give files elsewhere with data.paths")),
    "a ticker holding a folder separator is refused":
        Bad(options(StockOptions, tickers=["spy", "sub\\aapl"]), ConfigError, ("tickers='sub\\\\aapl'", "data.paths")),
    "a ticker that is .. is refused":
        Bad(options(StockOptions, tickers=[".."]), ConfigError, ("tickers='..'", "not a name")),
    "a ticker missing from a read-only data folder says where it belongs, that the folder is read-only, and the fix":
        Bad(ticker_missing_from_read_only_folder, DataError,
            ("stock/ko.us.txt is missing", "is read-only", "Put the file there", "$STW_DATA_DIR or data.root")),
    "a changed ticker file read with download=false is refused naming both digests":
        Bad(ticker_changed, DataError,
            ("stock/ko.us.txt: sha256 is", SOURCES["ko"].sha256, "data.allow_modified=true")),
    # ETT: the same reader, and the published file's digest
    "an ETT header naming OT twice is refused":
        Bad(ett_small(header=ETT_HEADER + ",OT"), DataError, ("ETTh1.csv", "names column 'OT' twice (fields 8 and 9)")),
    "an ETT date with an offset is refused naming the line":
        Bad(ett_small(dates={5: "2016-07-01 03:00:00+08:00"}), DataError, ("ETTh1.csv", "at line 5", "offset, +08:00")),
    "a changed ETTh1.csv read with download=false is refused naming both digests and the fix":
        Bad(ett_tampered(download=False), DataError,
            ("ETTh1.csv: sha256 is " + TAMPERED_SHA, ett.SOURCES["ETTh1.csv"].sha256, "Delete it",
             "data.allow_modified=true")),
    "a changed ETTh1.csv is refused by prepare_data too":
        Bad(ett_tampered(download=True), DataError, (TAMPERED_SHA, "Delete it", "data.allow_modified=true")),
    "ETTh1.csv missing from a read-only data folder says where it belongs, that it is read-only, and the fix":
        Bad(ett_missing_from_read_only_folder, DataError,
            ("ett/ETTh1.csv is missing", "is read-only", "Put the file there", "raw.githubusercontent.com",
             "$STW_DATA_DIR or data.root")),
    # text: labels, classes, separators, headers
    "a NaN label is refused naming the line":
        Bad(text(rows() + "NaN\tsomething odd\n"), DataError,
            ("data.tsv", "column 'label' holds 'NaN'", "marks a missing value, not a class", "line(s): 41",
             "fill in the class or delete")),
    "a lower-case nan label is refused too":
        Bad(text(rows() + "nan\tsomething odd\n"), DataError, ("data.tsv", "'nan'", "line(s): 41")),
    "an N/A label in a CSV is refused":
        Bad(text("label,text\n" + rows(sep=",") + "N/A,odd one\n", "data.csv", sep=",", header=True), DataError,
            ("data.csv", "'N/A'", "line(s): 42")),
    "a class with a single row is refused naming the class and its line":
        Bad(text(rows() + "eggs\tthe only egg\n"), DataError,
            ("data.tsv", "class 'eggs' has a single row (line 41)",
             "cannot be in both the training and the test split",
             "delete their rows or merge them into other classes")),
    "a class too small for the random test split is refused":
        Bad(text(rows() + "eggs\tone egg\neggs\ttwo eggs\n"), DataError,
            ("data.tsv", "classes ['eggs'] have no test row", "test_fraction=0.2", "add rows of those classes")),
    "a class with a single row is refused with a split column too":
        Bad(text(SPLIT_ROWS + "eggs,an egg,train\n", "data.csv", sep=",", header=True, split_column="split"), DataError,
            ("data.csv", "class 'eggs' has a single row (line 14)", "merge them into other classes")),
    "a CSV read with the default tab separator says to set data.sep=','":
        Bad(text(rows(sep=","), "data.csv"), DataError,
            ("data.csv", "line 1 has 1 '\\t'-separated field(s)", "columns (label, text)", "set data.sep=','")),
    "a CSV with a header read with the tab separator says to set data.sep=','":
        Bad(text("label,text\n" + rows(sep=","), "data.csv", header=True), DataError,
            ("data.csv", "found ['label,text']", "set data.sep=','")),
    "a semicolon-separated file says to set data.sep=';'":
        Bad(text(rows(sep=";"), "data.csv"), DataError, ("data.csv", "line 1", "set data.sep=';'")),
    "a TSV read with data.sep=',' says to set data.sep to a tab":
        Bad(text(rows(), sep=","), DataError, ("data.tsv", "line 1 has 1 ','-separated", "set data.sep to a tab")),
    "a TSV read with data.sep=',' whose texts hold one comma is refused by its tabbed class names":
        Bad(text(rows().replace("message number", "message, number"), sep=","), DataError,
            ("data.tsv", "holds 'spam\\tmessage' at line 1", "set data.sep to a tab")),
    "a line with an extra field is refused naming the line":
        Bad(text(rows() + "ham\ttext with\ta tab\n"), DataError,
            ("data.tsv", "line 41 has 3 '\\t'-separated field(s)", "quoted (data.quoting=minimal)")),
    "a line without its text field is refused naming the line":
        Bad(text(rows(20) + "spam\n" + rows(20)), DataError, ("data.tsv", "line 21 has 1", "columns (label, text)")),
    "a 1 MB first line of fields is refused naming the line":
        Bad(text("\t".join(["x"] * 500_000) + "\n" + rows()), DataError,
            ("data.tsv", "line 1 has 500000", "2 columns (label, text)")),
    "a 1 MB header line is refused at once":
        Bad(text("\t".join(["x"] * 500_000) + "\n" + rows(), header=True), DataError,
            ("data.tsv", "line 1, the header, is longer than 100,000 characters", "check data.header")),
    "a text header naming label twice is refused":
        Bad(text("label\ttext\tlabel\n" + rows().replace("\n", "\tx\n"), header=True), DataError,
            ("data.tsv", "names column 'label' twice (fields 1 and 3)")),
    "column_names naming a column twice is refused":
        Bad(options(TextOptions, column_names=("text", "text")), ConfigError,
            ("column_names=['text', 'text']", "name each once")),
    "a separator of two characters is refused":
        Bad(options(TextOptions, sep="::"), ConfigError, ("sep='::' must be one character",)),
    # video: files no frame decodes from, names, split files
    "a zero-byte video says no video frames could be decoded and the fix":
        Bad(clips_folder(lambda path: path.write_bytes(b""), "empty.avi"), DataError,
            ("empty.avi: no video frames could be decoded (the file is empty, 0 bytes)",
             "replace it with a complete copy")),
    "a video container holding no frame says no video frames could be decoded":
        Bad(clips_folder(empty_container, "empty.mp4"), DataError, ("empty.mp4: no video frames could be decoded",)),
    "an audio-only file says it holds no video stream":
        Bad(clips_folder(audio_only, "sound.mp4"), DataError,
            ("sound.mp4: no video frames could be decoded (the file holds no video stream)",)),
    "a video cut short names the frames decoded and declared":
        Bad(clips_folder(cut_short, "cut.avi"), DataError,
            ("cut.avi: only", "of the 82 video frames its header declares could be decoded", "cut short")),
    "a frame that is no image names the frame and the fix":
        Bad(clips_folder(broken_frame, "clip_0", layout="frames"), DataError,
            ("clip_0/frame_1.png: not a readable image", "replace or delete the frame")),
    "a clip folder without frames says which images it needs":
        Bad(clips_folder(Path.mkdir, "clip_0", layout="frames"), DataError,
            ("clip_0: no frames: the folder holds no .jpeg, .jpg, .png image",)),
    "moving-shapes with a read-only data root and cache folder says to point data.cache_dir at a writable one":
        Bad(shapes_without_a_writable_folder, DataError,
            ("the clips are not generated yet and cannot be written there", "read-only", "--data.cache_dir")),
    "a clips_dir that climbs out of the data folder is refused naming the option":
        Bad(options(FolderOptions, clips_dir="../outside/clips"), ConfigError,
            ("clips_dir='../outside/clips' climbs out of its folder", "give the absolute path")),
    "a split_file that climbs out of the clips folder is refused naming the option":
        Bad(options(FolderOptions, clips_dir="clips", split_file="../../elsewhere/splits.csv"), ConfigError,
            ("split_file='../../elsewhere/splits.csv' climbs out", "give the absolute path")),
    "a split file listing a clip outside the clips folder is refused naming the line":
        Bad(split_file("clip,label\nok/a.avi,ok\n../../outside/b.avi,ok\n"), DataError,
            ("splits.csv line 3: clip '../../outside/b.avi' climbs out of the clips folder",)),
    "a split file naming label twice is refused":
        Bad(split_file("clip,label,label\na.avi,x,y\n"), DataError, ("splits.csv: line 1", "'label' twice")),
    "a keypoint CSV naming a column twice is refused, in training and in predict alike":
        Bad(predict("gestures", written("walk.csv", KEYPOINTS_TWICE)), DataError,
            ("walk.csv: line 1, the header, names column 'left_wrist_x' twice", "rename or delete one")),
    # stw predict: a file of another kind than the run's
    "a stock CSV given to a text run says it is a table, not messages":
        Bad(predict("sms", written("spy.us.txt", PRICES)), DataError,
            ("spy.us.txt: a table, not messages", f"line 1 is {STOOQ!r}", "7 ','-separated fields",
             "one message per line")),
    "an ETT CSV given to a text run says it is a table":
        Bad(predict("sms", written("ETTh1.csv", READINGS)), DataError, ("ETTh1.csv: a table", "one message per line")),
    "the labelled training file given to a text run says to give the texts only":
        Bad(predict("sms", written("labelled.tsv", rows(5))), DataError,
            ("labelled.tsv: every line holds a class name (ham, spam)", "give the texts only")),
    "a video given to a text run says it is binary, not text":
        Bad(predict("sms", written("clip.avi", VIDEO_BYTES)), DataError,
            ("clip.avi: binary data, not text", "one message per line")),
    "messages given to an ETT run name the columns the run needs and what was found":
        Bad(predict("ett", written("messages.txt", "free entry, win now\nsee you at 5\nok, ok, ok\n")), DataError,
            ("messages.txt: missing columns ['date', 'HUFL'", "found ['free entry', ' win now']",
             "The header must name")),
    "a video given to an ETT run says it is binary, not a CSV":
        Bad(predict("ett", written("clip.avi", VIDEO_BYTES)), DataError,
            ("clip.avi: line 1 holds binary data", "give a comma-separated UTF-8 text file")),
    "a folder given to an ETT run says to give the CSV file":
        Bad(predict("ett", lambda folder: folder), DataError, ("a folder, not a file", "give the CSV file")),
    "a CSV given to a video run says no video frames could be decoded and what the run classifies":
        Bad(predict("video-folder", written("prices.csv", PRICES)), DataError,
            ("prices.csv: no video frames could be decoded", "give a video file (.avi", "prices.csv is a .csv file")),
    "a zero-frame video given to a video run says no video frames could be decoded":
        Bad(predict("video-folder", written("empty.mp4", empty_container)), DataError,
            ("empty.mp4: no video frames could be decoded", "This run classifies clips")),
    "a stock CSV given to a gestures run names the keypoint columns and what was found":
        Bad(predict("gestures", written("spy.csv", PRICES)), DataError,
            ("spy.csv: no column left_shoulder_x", "found ['Date', 'Open'", "16 keypoint columns")),
}
# fmt: on


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_with_a_message_naming_what_is_wrong_and_the_fix(case: Bad, tmp_path: Path) -> None:
    assert isinstance(case.says, tuple), "says must be a tuple of substrings, not one string"
    with pytest.raises(case.error) as raised:
        case.read(tmp_path)
    message = str(raised.value)
    missing = [text for text in case.says if text not in message]
    assert not missing, f"the message lacks {missing}:\n{message}"


def test_the_inputs_the_cases_edit_are_read_without_error(tmp_path: Path) -> None:
    """So each case above fails for the one thing it changes."""
    for name in ("stock", "text", "ett"):
        (tmp_path / name).mkdir()
    stock()(tmp_path / "stock")
    text(rows())(tmp_path / "text")
    with pytest.raises(DataError, match="needs at least 14400 rows, found 20"):  # read, then too short to split
        ett_small()(tmp_path / "ett")


# --- beyond one message --------------------------------------------------------------------------------------------
def test_a_megabyte_header_is_refused_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(["Volume"] * 150_000) + "\n")  # repeated names: pandas would rename them for hours
    started = time.perf_counter()
    with pytest.raises(DataError, match="the header, is longer than"):
        StockDataModule(StockOptions(paths=[str(path)])).setup()
    assert time.perf_counter() - started < 1


def test_allow_modified_reads_a_changed_file_and_is_in_the_config_and_the_fingerprint(tmp_path: Path) -> None:
    tampered_ett(tmp_path)
    module = EttDataModule(EttOptions(root=str(tmp_path), download=False, allow_modified=True))
    module.setup()
    assert module.fingerprint()["options"]["allow_modified"] is True
    assert module.fingerprint()["files"]["ETTh1.csv"] == TAMPERED_SHA
    # Off (the default), it is left out, so the fingerprints of runs on the published file do not change.
    assert "allow_modified" not in EttDataModule(EttOptions()).fingerprint()["options"]
    config = parse_run_args(["--data", "ett", "--model", "linear", "data.allow_modified=true"])
    assert config["data"]["allow_modified"] is True


def test_allow_modified_is_documented_in_the_train_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        parse_run_args(["--data", "ett", "--model", "linear", "--help"])
    assert "allow_modified" in capsys.readouterr().out


def test_a_registered_file_is_hashed_once_per_size_and_mtime_even_in_a_read_only_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprint, "_known", {})
    hashed = []
    monkeypatch.setattr(
        fingerprint, "sha256_file", lambda path: hashed.append(path) or hashlib.sha256(path.read_bytes()).hexdigest()
    )
    root = tmp_path / "data"
    (root / "ett").mkdir(parents=True)
    (root / "ett" / "ETTh1.csv").write_bytes(real("ett/ETTh1.csv").read_bytes())
    for folder in (root / "ett", root):
        folder.chmod(0o555)
    try:
        for _ in range(2):
            EttDataModule(EttOptions(root=str(root), download=False)).setup()
        monkeypatch.setattr(fingerprint, "_known", {})  # a later process: the store in the cache folder answers
        EttDataModule(EttOptions(root=str(root), download=False)).setup()
        assert len(hashed) == 1 and (tmp_path / "cache" / "sha256.json").is_file()
        assert sorted(p.name for p in (root / "ett").iterdir()) == ["ETTh1.csv"]  # nothing written beside the data
    finally:
        for folder in (root, root / "ett"):
            folder.chmod(0o755)
    path = root / "ett" / "ETTh1.csv"
    path.write_bytes(path.read_bytes())  # the same bytes, a new mtime: hashed again
    assert cached_sha256(path) == ett.SOURCES["ETTh1.csv"].sha256 and len(hashed) == 2


def test_a_cache_folder_that_cannot_be_written_still_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STW_CACHE_DIR", str(read_only(tmp_path / "cache")))
    monkeypatch.setattr(fingerprint, "_known", {})
    try:
        path = tampered_ett(tmp_path)
        assert cached_sha256(path) == TAMPERED_SHA
        assert list((tmp_path / "cache").iterdir()) == []
    finally:
        (tmp_path / "cache").chmod(0o755)


def test_a_read_only_frame_cache_still_reads_every_clip_with_one_warning(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    for label in ("dark", "light"):
        for clip in range(4):
            (clips / label / f"clip_{clip}").mkdir(parents=True)
            for frame in range(3):
                value = np.full((8, 8, 3), 40 if label == "dark" else 200, dtype=np.uint8)
                Image.fromarray(value).save(clips / label / f"clip_{clip}" / f"frame_{frame}.png")
    cache = read_only(tmp_path / "cache")
    try:
        with pytest.warns(UserWarning, match=r"frame cache .*cache/frames is read-only.*point --data.cache_dir"):
            module = VideoFolder(FolderOptions(clips_dir=str(clips), layout="frames", resize=None, clip_len=2,
                                               cache_dir=str(cache)))  # fmt: skip
            module.setup()
        assert sum(len(module.datasets[split]) for split in ("train", "val", "test")) == 8
        assert list(cache.iterdir()) == []
    finally:
        cache.chmod(0o755)
