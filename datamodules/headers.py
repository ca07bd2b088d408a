"""A table's header line, checked before pandas reads the table.

pandas renames a repeated column name (`Volume`, `Volume.1`), so a reader asking for `Volume` could get the wrong
field, and its renaming is quadratic in the number of repeated names (a 1 MB header of repeated names takes hours).
So the header is read and checked here first: at most MAX_HEADER_CHARS characters and MAX_COLUMNS columns, far
beyond any real dataset (ETTh1 has 8 columns, the widest common benchmarks under 1,000), and no name twice.
"""

import csv
from pathlib import Path

from datamodules.errors import DataError

MAX_HEADER_CHARS = 100_000
MAX_COLUMNS = 10_000


def first_line(path: Path) -> str:
    """Line 1 of a text file without its line ending, never reading more than a header may hold; a DataError if it
    holds binary data (a video or a spreadsheet given for a CSV)."""
    limit = 4 * MAX_HEADER_CHARS + 1  # a UTF-8 character takes at most 4 bytes
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a file; give the CSV file itself")
    with open(path, "rb") as handle:
        raw = handle.readline(limit)
    if b"\0" in raw:
        raise DataError(
            f"{path}: line 1 holds binary data, not text: this is no CSV (a video, an image or a spreadsheet?); "
            "give a comma-separated UTF-8 text file with a header line"
        )
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        if len(raw) < limit or error.start < len(raw) - 3:  # not merely a character cut at the read limit
            raise DataError(
                f"{path}: byte 0x{raw[error.start]:02x} at offset {error.start} (line 1) is not UTF-8; re-save the "
                "file as UTF-8"
            ) from None
        line = raw[: error.start].decode("utf-8")
    return line.removeprefix("\ufeff").rstrip("\r\n")


def shown(names: list[str], limit: int = 20) -> str:
    """Column names for a message: the first `limit`, each cut to 60 characters (a bad header can be huge)."""
    cut = [name if len(name) <= 60 else f"{name[:57]}..." for name in names[:limit]]
    return str(cut) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def header_names(line: str, path: Path, fix: str, sep: str = ",", quoting: int = csv.QUOTE_MINIMAL) -> list[str]:
    """The column names of header `line` of `path`; a DataError naming the file, line 1 and `fix` if the header is
    absurdly long or wide or names a column twice."""
    if len(line) > MAX_HEADER_CHARS:
        raise DataError(
            f"{path}: line 1, the header, is longer than {MAX_HEADER_CHARS:,} characters, the most a header may "
            f"have; {fix}"
        )
    names = next(csv.reader([line], delimiter=sep, quoting=quoting), [])
    if len(names) > MAX_COLUMNS:
        raise DataError(
            f"{path}: line 1, the header, has {len(names):,} columns, more than the {MAX_COLUMNS:,} a table may have; "
            f"{fix}"
        )
    first: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if name in first:
            raise DataError(
                f"{path}: line 1, the header, names column {name!r} twice (fields {first[name]} and {number}), so "
                "one of them would be read in place of the other: rename or delete one of the two"
            )
        first[name] = number
    return names
