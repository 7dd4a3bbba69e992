from pathlib import Path

import pytest

from sihnet.atomic import write_atomic, write_json_atomic, write_text_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "old")

    def broken(temp: Path) -> None:
        temp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_writes_nan_as_null(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "m.json", {"a": float("nan"), "b": [1.5, float("inf")]})
    assert (tmp_path / "m.json").read_text().replace(" ", "").replace(
        "\n", ""
    ) == '{"a":null,"b":[1.5,null]}'
