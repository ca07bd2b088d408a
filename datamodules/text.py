"""Labelled text classification from one CSV/TSV file (default: the SMS Spam Collection, ham/spam).

Reading order, each step guarding the next: decode the file strictly as UTF-8, parse it, check the
columns and that no text is empty, drop duplicate texts (those the tokenizer sees alike, whatever their
case when lowercasing and their spacing; keep the first and its label), split by message
(seeded and stratified, or the file's own split column), fit the tokenizer on the training split only,
then encode every split once. Batches are (ids LongTensor [B, T] padded with pad id 0 to the batch's
longest message, labels LongTensor [B]); training batches are drawn in length buckets to waste less padding.
"""

import csv
import io
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler

from datamodules import register_dataset
from datamodules.base import DataOptions, StwDataModule
from datamodules.download import Source
from datamodules.errors import ConfigError, DataError
from datamodules.fingerprint import fingerprint
from datamodules.headers import header_names
from datamodules.paths import data_root
from datamodules.specs import ClassifySpec
from datamodules.text_vocab import PAD_ID, SPECIAL_TOKENS, TextTokenizer, fit_tokenizer, normalised
from datamodules.windows import GlobalBatchSlices, process_shard

log = logging.getLogger(__name__)

QUOTING = {"none": csv.QUOTE_NONE, "minimal": csv.QUOTE_MINIMAL}
SPLITS = ("train", "val", "test")
BUCKET_POOL = 50  # batches per pool sorted by length: enough to group lengths, few enough to stay shuffled
# The separators a wrong data.sep usually should have been, and how to set each on the command line.
SEPARATORS = {",": "data.sep=','", ";": "data.sep=';'", "|": "data.sep='|'", "\t": "data.sep to a tab ($'\\t' in bash)"}
# Labels that mark a missing cell (pandas reads them as NaN), never a class.
MISSING_MARKERS = frozenset({"nan", "-nan", "na", "n/a", "#n/a", "#na", "<na>", "null"})


# The unmodified file of the official UCI zip, as ../shared/data/text/PROVENANCE.md traces it.
SOURCES = {
    "SMSSpamCollection": Source(
        "https://raw.githubusercontent.com/Anilkanta-sudo/Spam_message_detector/"
        "b8a2ed94a03f64acc822021caea9d85c1a8fc583/smsspamcollection/SMSSpamCollection",
        "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
    )
}


@dataclass
class TextOptions(DataOptions):
    """Labelled text in a CSV/TSV file: one text and its class per row.

    Args:
        path: the file; default <root>/text/SMSSpamCollection.
        sep: field separator (tab for the SMS file, "," for CSV).
        text_column: column holding the text.
        label_column: column holding the class name.
        header: the first row holds column names.
        column_names: column names in file order when there is no header row (ignored with header).
        quoting: "none" reads quote characters as text (the SMS file has raw quotes); "minimal" is CSV quoting.
        split_column: use this column's train/val/test values as the split instead of a random one.
        val_fraction: share of each class held out for validation (random split only).
        test_fraction: share of each class held out for testing (random split only).
        seed: seeds the random split (the run's --seed seeds the training order and the weighted sampler).
        tokenizer: "word" (whole words) or "bpe" (subword byte-pair encoding).
        vocab_size: largest vocabulary, including <pad> and <unk>.
        min_freq: a word (or BPE merge) must occur this often in the training split to enter the vocabulary.
        max_len: longest token sequence; longer texts are truncated.
        lowercase: lowercase text before tokenising.
        sampler: "weighted" draws training items with replacement so classes come equally often; "none" shuffles.
    """

    path: str | None = None
    sep: str = "\t"
    text_column: str = "text"
    label_column: str = "label"
    header: bool = False
    column_names: tuple[str, ...] = ("label", "text")
    quoting: Literal["none", "minimal"] = "none"
    split_column: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    tokenizer: Literal["word", "bpe"] = "word"
    vocab_size: int = 20000
    min_freq: int = 1
    max_len: int = 128
    lowercase: bool = True
    sampler: Literal["none", "weighted"] = "none"

    def __post_init__(self) -> None:
        # Literal types are only checked by the CLI parser; options built from a dict or a saved run land here.
        for option in fields(self):
            valid = get_args(option.type) if get_origin(option.type) is Literal else ()
            if valid and getattr(self, option.name) not in valid:
                raise ConfigError(
                    f"data option {option.name}={getattr(self, option.name)!r}; choose one of: {', '.join(valid)}"
                )
        if not (0 < self.val_fraction and 0 < self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ConfigError(
                f"val_fraction={self.val_fraction} and test_fraction={self.test_fraction} must be > 0 and sum to < 1"
            )
        if self.vocab_size <= len(SPECIAL_TOKENS) or self.max_len < 1 or self.min_freq < 1:
            raise ConfigError(f"need vocab_size > {len(SPECIAL_TOKENS)}, max_len >= 1 and min_freq >= 1")
        if len(self.sep) != 1:
            raise ConfigError(f"data option sep={self.sep!r} must be one character, e.g. ',' or a tab")
        if len(set(self.column_names)) < len(self.column_names):
            raise ConfigError(
                f"data option column_names={list(self.column_names)} names a column twice; name each once"
            )


def file_line(row: int, options: TextOptions) -> int:
    """The line of the file holding table row `row` (0-based; blank lines are rows too)."""
    return row + (2 if options.header else 1)


def line_list(rows: np.ndarray, options: TextOptions) -> str:
    """The file lines of table rows `rows`, the first ten of them."""
    return ", ".join(str(file_line(i, options)) for i in rows[:10]) + (" ..." if len(rows) > 10 else "")


def separator_hint(text: str, sep: str, columns: int, fitting_only: bool = False) -> str:
    """How to set data.sep when `text` (a line, or the column names found) seems separated by another character:
    the one that would cut it into `columns` fields, else (unless `fitting_only`) the most frequent one."""
    counts = {other: text.count(other) for other in SEPARATORS if other != sep}
    fitting = [other for other, count in counts.items() if count == columns - 1]
    other = fitting[0] if fitting else None if fitting_only else max(counts, key=counts.get)
    if other is None or not counts[other]:
        return ""
    return f"; it holds {counts[other]} {other!r}: if that separates the fields, set {SEPARATORS[other]}"


def check_fields(content: str, path: Path, options: TextOptions) -> None:
    """Every line has one field per column, checked before pandas reads the file: pandas silently drops the extra
    fields of line 1, and its renaming of repeated header names is quadratic (a 1 MB header hangs it)."""
    quoting = QUOTING[options.quoting]
    if options.header:
        fix = "check data.header (false when line 1 is a data row) and data.sep"
        columns = header_names(content.partition("\n")[0].rstrip("\r"), path, fix, options.sep, quoting)
    else:
        columns = list(options.column_names)
    lines = csv.reader(io.StringIO(content), delimiter=options.sep, quoting=quoting)
    try:
        for fields in lines:
            if len(fields) == len(columns) or not "".join(fields).strip():  # blank lines: the empty-text check's
                continue
            line, fewer = options.sep.join(fields), len(fields) < len(columns)
            fix = separator_hint(line, options.sep, len(columns), fitting_only=not fewer) or (
                "; check data.sep and data.header"
                if fewer
                else "; a text holding the separator must be quoted (data.quoting=minimal) or use another data.sep"
            )
            raise DataError(
                f"{path}: line {lines.line_num} has {len(fields)} {options.sep!r}-separated field(s) but the file "
                f"has {len(columns)} columns ({', '.join(columns)}){fix}"
            )
    except csv.Error as err:
        raise DataError(
            f"{path}: cannot read line {lines.line_num} as a {options.sep!r}-separated table ({err}); check "
            "data.sep, data.quoting and data.header"
        ) from None


def read_table(path: Path, options: TextOptions) -> pd.DataFrame:
    """The file as a table of strings, one row per line (blank lines kept, so row i is line i + header)."""
    if not path.is_file():
        raise DataError(
            f"{path}: file not found; set --data.path or --data.root "
            "(the SMS file is SMSSpamCollection from UCI dataset 228)"
        )
    raw = path.read_bytes()
    try:
        # Decoding ourselves, not in pandas, so the error can name the byte offset in the file.
        content = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}: byte 0x{raw[err.start]:02x} at offset {err.start} (line {line}) is not UTF-8; "
            "re-save the file as UTF-8"
        ) from None
    check_fields(content, path, options)
    try:
        return pd.read_csv(
            io.StringIO(content),
            sep=options.sep,
            quoting=QUOTING[options.quoting],
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            index_col=False,
            header=0 if options.header else None,
            names=None if options.header else list(options.column_names),
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(
            f"{path}: cannot read as a {options.sep!r}-separated table ({str(err).strip()}); check --data.sep, "
            "--data.quoting and --data.header"
        ) from None


def check_columns(table: pd.DataFrame, path: Path, options: TextOptions) -> None:
    needed = [options.text_column, options.label_column] + ([options.split_column] if options.split_column else [])
    missing = [column for column in needed if column not in table.columns]
    if missing:
        found = list(map(str, table.columns))
        raise DataError(
            f"{path}: no column {', '.join(map(repr, missing))}; found {found}{separator_hint(' '.join(found), options.sep, len(needed))}. "
            "Set --data.text_column/--data.label_column, or --data.header/--data.column_names/--data.sep"
        )
    for column in needed:
        empty = np.flatnonzero(table[column].str.strip() == "")
        if len(empty):
            raise DataError(
                f"{path}: column {column!r} is empty on {len(empty)} line(s): {line_list(empty, options)}; fill or "
                "delete them"
            )
    labels = table[options.label_column].str.strip()
    unmarked = np.flatnonzero(labels.str.lower().isin(MISSING_MARKERS))
    if len(unmarked):
        raise DataError(
            f"{path}: column {options.label_column!r} holds {labels.iloc[unmarked[0]]!r}, which marks a missing "
            f"value, not a class, on {len(unmarked)} line(s): {line_list(unmarked, options)}; fill in the class or "
            "delete those lines"
        )
    if options.sep != "\t" and len(tabbed := np.flatnonzero(labels.str.contains("\t"))):
        row = tabbed[0]
        raise DataError(
            f"{path}: column {options.label_column!r} holds {labels.iloc[row]!r} at line {file_line(row, options)}: "
            "a tab inside a class name means the file is tab-separated; set " + SEPARATORS["\t"]
        )


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split name per row: each class is shuffled with `seed` and cut into test, val and train shares."""
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "train", dtype=object)
    for label in sorted(set(labels)):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_test, n_val = round(len(rows) * test_fraction), round(len(rows) * val_fraction)
        split[rows[:n_test]] = "test"
        split[rows[n_test : n_test + n_val]] = "val"
    return split


def file_split(values: pd.Series, path: Path, column: str) -> np.ndarray:
    bad = ~values.isin(SPLITS)
    if bad.any():
        found = sorted(set(values[bad]))[:5]
        raise DataError(f"{path}: column {column!r} holds {found}; use only {', '.join(SPLITS)}")
    return values.to_numpy(dtype=object)


def check_split_sizes(
    split: np.ndarray, labels: np.ndarray, lines: np.ndarray, path: Path, options: TextOptions
) -> None:
    """Every split needs rows, and every class a training row (else it cannot be learnt and its weight is infinite)
    and, from the random split, a test row (else its scores are undefined); a class of one row fits no split file
    either. `lines` are the rows' lines in the file."""
    how = (
        f"column {options.split_column!r}"
        if options.split_column
        else f"val_fraction={options.val_fraction}, test_fraction={options.test_fraction}"
    )
    per_class = dict(sorted(Counter(labels).items()))
    for name in SPLITS:
        if not (split == name).any():
            raise DataError(
                f"{path}: the {name} split is empty: {len(labels)} unique rows {per_class} with {how}; "
                "add rows or change the fractions"
            )
    for name, role in (("train", "training"), ("test", "test")):
        absent = sorted(set(labels) - set(labels[split == name]))
        if name == "test" and options.split_column:  # the file's own choice, unless no split could hold the class
            absent = [label for label in absent if per_class[label] == 1]
        if absent:
            single = "".join(
                f"class {label!r} has a single row (line {lines[labels == label][0]}), which cannot be in both the "
                "training and the test split; "
                for label in absent
                if per_class[label] == 1
            )
            raise DataError(
                f"{path}: classes {absent} have no {role} row ({per_class} with {how}); {single}add rows of those "
                "classes, or delete their rows or merge them into other classes"
            )


@dataclass(frozen=True)
class LabelledRows:
    """Unique rows of the file, aligned arrays: text, class name and split name ("train", "val" or "test")."""

    texts: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    duplicates_removed: int
    duplicates_conflicting: int  # removed duplicates whose label differs from the kept first occurrence's


def drop_duplicates(table: pd.DataFrame, path: Path, options: TextOptions) -> tuple[pd.DataFrame, int]:
    """The rows whose text the tokenizer sees differently from every earlier row's, and how many dropped rows
    had another label than the kept one (shown in a warning, not resolved: the first row's label stays)."""
    texts, labels = table[options.text_column], table[options.label_column].str.strip()
    first_of: dict[str, int] = {}  # normalised text -> its first row
    first = np.array(
        [first_of.setdefault(normalised(text, options.lowercase), row) for row, text in enumerate(texts)], dtype=int
    )
    repeated = first != np.arange(len(table))
    conflicting = np.flatnonzero(repeated & (labels.to_numpy() != labels.to_numpy()[first]))
    unique = table[~repeated]
    log.info(
        "%s: removed %d duplicate texts (alike to the tokenizer; kept the first of each), %d remain",
        path.name,
        repeated.sum(),
        len(unique),
    )
    if len(conflicting):
        row = conflicting[0]
        log.warning(
            "%s: %d duplicate texts have another label than their first occurrence, whose label is kept: e.g. "
            "line %d (%r) is %r but line %d (%r) is %r; correct the labels or delete the wrong lines",
            path.name,
            len(conflicting),
            file_line(row, options),
            texts.iloc[row],
            labels.iloc[row],
            file_line(first[row], options),
            texts.iloc[first[row]],
            labels.iloc[first[row]],
        )
    return unique, len(conflicting)


def read_labelled_rows(path: Path, options: TextOptions) -> LabelledRows:
    """Read and check the file, drop duplicate texts (keeping the first) and split what is left."""
    table = read_table(path, options)
    check_columns(table, path, options)
    unique, conflicting = drop_duplicates(table, path, options)
    labels = unique[options.label_column].str.strip().to_numpy(dtype=object)
    if len(set(labels)) == 1:  # no rows at all is the split-size error below
        raise DataError(
            f"{path}: column {options.label_column!r} holds one class {sorted(set(labels))}; "
            "classification needs at least two (check --data.label_column)"
        )
    split = (
        file_split(unique[options.split_column], path, options.split_column)
        if options.split_column
        else stratified_split(labels, options.val_fraction, options.test_fraction, options.seed)
    )
    check_split_sizes(split, labels, unique.index.to_numpy() + file_line(0, options), path, options)
    texts = unique[options.text_column].to_numpy(dtype=object)
    return LabelledRows(texts, labels, split, len(table) - len(unique), conflicting)


class TokenDataset(Dataset):
    """Encoded texts of one split, served a whole batch at a time, cut to the batch's longest item."""

    def __init__(self, texts: list[str], ids: Tensor, lengths: Tensor, labels: Tensor) -> None:
        self.texts, self.ids, self.lengths, self.labels = texts, ids, lengths, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: list[int] | Tensor) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(index)
        return self.ids[index, : int(self.lengths[index].max())], self.labels[index]


class LengthBuckets(Sampler[Tensor]):
    """Batches of similar length: the sampler's order is cut into pools, each pool sorted by length and
    cut into batches, and the batches are shuffled with `generator` so every epoch repeats under a seed."""

    def __init__(self, order: Sampler[int], lengths: Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.order, self.lengths, self.batch_size, self.generator = order, lengths, batch_size, generator

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        batches = []
        for pool in torch.tensor(list(self.order), dtype=torch.long).split(self.batch_size * BUCKET_POOL):
            batches += pool[torch.argsort(self.lengths[pool], stable=True)].split(self.batch_size)
        for i in torch.randperm(len(batches), generator=self.generator):
            yield batches[i]


@register_dataset("sms")
class TextDataModule(StwDataModule):
    """Labelled text classification: token-id batches from any labelled CSV/TSV (default the SMS Spam Collection).

    The default file is downloaded when missing (data.download); a file already there, or one given by path, is
    read where it is.
    """

    Options = TextOptions
    task = "classify"
    input_kind = "tokens"

    def __init__(self, options: TextOptions) -> None:
        super().__init__(options)
        self.tokenizer: TextTokenizer | None = None
        self.class_names: list[str] | None = None
        self.datasets: dict[str, TokenDataset] = {}
        self.duplicates_removed = 0
        self.duplicates_conflicting = 0

    @property
    def path(self) -> Path:
        if self.options.path:
            return Path(self.options.path).expanduser().resolve()
        return data_root(self.options.root) / "text" / "SMSSpamCollection"

    def sources(self) -> dict[Path, Source]:
        return {} if self.options.path else {self.path: SOURCES["SMSSpamCollection"]}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        rows = read_labelled_rows(self.path, self.options)
        self.duplicates_removed = rows.duplicates_removed
        self.duplicates_conflicting = rows.duplicates_conflicting
        class_names = sorted(set(rows.labels))
        if self.class_names is not None and self.class_names != class_names:
            raise DataError(
                f"{self.path}: classes {class_names} differ from the restored state's {self.class_names}; "
                "use the data the state was fitted on"
            )
        self.class_names = class_names
        if self.tokenizer is None:
            options = self.options
            self.tokenizer = fit_tokenizer(
                options.tokenizer,
                list(rows.texts[rows.split == "train"]),
                options.vocab_size,
                options.min_freq,
                options.lowercase,
                options.max_len,
            )
        class_index = {name: i for i, name in enumerate(class_names)}
        label_ids = torch.tensor([class_index[label] for label in rows.labels], dtype=torch.long)
        for name in SPLITS:
            in_split = np.flatnonzero(rows.split == name)
            texts = list(rows.texts[in_split])
            self.datasets[name] = TokenDataset(texts, *self.tokenizer.encode(texts), label_ids[in_split])

    @property
    def class_counts(self) -> Tensor:
        """Training rows per class, in class_names order."""
        return torch.bincount(self.datasets["train"].labels, minlength=len(self.class_names))

    @property
    def spec(self) -> ClassifySpec:
        if not self.datasets:
            raise RuntimeError("call setup() before reading spec")
        return ClassifySpec(
            input_kind=self.input_kind,
            class_names=self.class_names,
            class_counts=self.class_counts.tolist(),
            vocab_size=self.tokenizer.vocab_size,
            pad_id=PAD_ID,
            details={
                "max_len": self.options.max_len,
                "duplicates_removed": self.duplicates_removed,
                "duplicates_conflicting": self.duplicates_conflicting,
                **{f"n_{name}": len(self.datasets[name]) for name in SPLITS},
            },
        )

    def train_dataloader(self) -> DataLoader:
        train = self.datasets["train"]
        generator = torch.Generator().manual_seed(self.options.shuffle_seed)
        if self.options.sampler == "weighted":
            # Each item weighs 1 / its class count, so every class is drawn equally often in expectation.
            item_weights = (1.0 / self.class_counts.double())[train.labels]
            order = WeightedRandomSampler(item_weights, len(train), replacement=True, generator=generator)
        else:
            order = RandomSampler(train, generator=generator)
        buckets = LengthBuckets(order, train.lengths, self.options.batch_size, generator)
        shares = GlobalBatchSlices(buckets, len(train), self.options.batch_size, process_shard())
        return DataLoader(train, sampler=shares, batch_size=None)

    def encode_texts(self, texts: list[str]) -> Tensor:
        """Raw texts -> ids [N, T] (LongTensor, padded with pad_id to the longest) with the fitted tokenizer."""
        if self.tokenizer is None:
            raise RuntimeError("no fitted tokenizer: call setup() or load_state_dict() first")
        return self.tokenizer.encode(texts)[0]

    def shaping_options(self) -> dict[str, Any]:
        # The file's sha256 already names the data, so where it lives must not change the fingerprint.
        return {k: v for k, v in super().shaping_options().items() if k != "path"}

    def fingerprint(self) -> dict[str, Any]:
        return fingerprint([self.path], self.shaping_options())

    def state_dict(self) -> dict[str, Any]:
        """The fitted tokenizer (word: its vocabulary list; bpe: its JSON) and the class names; JSON-serialisable."""
        if self.tokenizer is None:
            return {}
        return {"tokenizer": self.tokenizer.state_dict(), "class_names": self.class_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.tokenizer = TextTokenizer.from_state_dict(state["tokenizer"])
            self.class_names = list(state["class_names"])
