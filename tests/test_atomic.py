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


def test_only_a_dead_local_process_temporaries_are_removed(tmp_path: Path) -> None:
    import os
    import subprocess

    from sihnet.atomic import HOST, remove_stale_temporaries

    finished = subprocess.Popen(["true"])  # a process that has ended
    finished.wait()
    names = {
        "dead": f".last.pt.{HOST}-{finished.pid}.abc123.tmp",
        "alive": f".last.pt.{HOST}-{os.getpid()}.def456.tmp",  # a live job writing now
        "other host": f".last.pt.othernode-{finished.pid}.ghi789.tmp",
        "user file": ".notes.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"keep")
    assert remove_stale_temporaries([tmp_path]) == 1
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([names["alive"], names["other host"], names["user file"], "last.pt"])


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from sihnet.atomic import UMASK

    write_text_atomic(tmp_path / "shared.csv", "a,b\n")
    mode = stat.S_IMODE(os.stat(tmp_path / "shared.csv").st_mode)
    assert mode == 0o666 & ~UMASK  # not mkstemp's 0600
