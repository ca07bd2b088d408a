"""Plain-text tables for the terminal: a header line, numbers right-aligned, text left-aligned."""

import math
from numbers import Number
from typing import Any


def cell(value: Any, digits: int = 6) -> str:
    """A value as a table shows it: missing values and NaN as "-", numbers with `digits` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def text_table(headers: list[str], rows: list[list[Any]], digits: int = 6) -> str:
    texts = [[cell(value, digits) for value in row] for row in rows]
    widths = [max(len(text) for text in column) for column in zip(headers, *texts, strict=False)]
    numeric = [
        all(isinstance(row[i], Number) or row[i] is None for row in rows) and bool(rows) for i in range(len(headers))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=False)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in texts)])
