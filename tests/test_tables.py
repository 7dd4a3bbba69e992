"""One table reader and writer: delimiters, quoted fields, named errors, no silent surprises."""

from __future__ import annotations

from pathlib import Path

import pytest

from sihnet.errors import SihnetError
from sihnet.tables import read_table, write_table


@pytest.mark.parametrize(
    ("name", "text"),
    [("t.csv", "a,b\n1,2\n"), ("t.tsv", "a\tb\n1\t2\n"), ("t.txt", "a;b\n1;2\n")],
)
def test_delimiters(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert read_table(tmp_path / name, "table") == (["a", "b"], [{"a": "1", "b": "2"}])


def test_quoted_fields_stay_whole_and_round_trip(tmp_path: Path) -> None:
    rows = [{"patient_id": "P1", "note": 'said "yes",\nthen left'}]
    write_table(tmp_path / "t.csv", ["patient_id", "note"], rows)
    assert read_table(tmp_path / "t.csv", "table")[1] == rows


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "labels table t.csv is empty"),
        (b"a,b,a\n1,2,3\n", "labels table t.csv: column 'a' appears more than once"),
        (b"\xff\xfe\x00a", "labels table t.csv is not UTF-8 text"),
    ],
)
def test_problems_name_the_table(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "t.csv").write_bytes(content)
    with pytest.raises(SihnetError, match=message):
        read_table(tmp_path / "t.csv", "labels table")
