"""CSV/TSV tables in and out: the manifest, the labels and override tables, and every table written.

One reader (delimiter from the suffix or the header line; quoted fields kept whole; a duplicated
column is an error, never "the last one wins") and one atomic writer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sihnet.atomic import write_text_atomic
from sihnet.errors import SihnetError


def read_table(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows (values stripped) of a CSV/TSV file.

    Args:
        path: ``.tsv`` is tab-separated; otherwise the most frequent of ``,`` tab ``;`` in the header.
        what: what the table is, for messages (``manifest``, ``labels table``, …).

    Raises:
        SihnetError: unreadable, empty, not text, or a column named twice (one line).
    """
    name = f"{what} {Path(path).name}"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SihnetError(f"{name} is not UTF-8 text") from None
    except OSError as error:
        raise SihnetError(f"cannot read {name}: {error.strerror or type(error).__name__}") from None
    if not text.strip():
        raise SihnetError(f"{name} is empty")
    header = text.splitlines()[0]
    delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else max(",\t;", key=header.count)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        table = list(reader)
    except csv.Error as error:
        raise SihnetError(f"{name} is not a valid table ({error})") from None
    columns = [c.strip() for c in table[0]]
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        raise SihnetError(f"{name}: column {repeated[0]!r} appears more than once")
    rows = [
        {column: (row[i].strip() if i < len(row) else "") for i, column in enumerate(columns)}
        for row in table[1:]
        if any(cell.strip() for cell in row)
    ]
    return columns, rows


def table_text(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], delimiter: str = ","
) -> str:
    """The table as CSV (or TSV with ``delimiter="\\t"``) text; missing values are empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer,
        fieldnames=list(columns),
        delimiter=delimiter,
        lineterminator="\n",
        extrasaction="ignore",
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_table(
    path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], delimiter: str = ","
) -> None:
    """Write a table atomically (see :func:`table_text`)."""
    write_text_atomic(Path(path), table_text(columns, rows, delimiter))


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file sihnet wrote (fold predictions, out-of-fold predictions)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
