"""The run's preparation (``sihnet.training.prepare``)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_run_of_an_older_version_resumes_and_a_changed_value_is_named(tmp_path: Path) -> None:
    """A key added to the configuration since the run was written takes its default (what the run
    trained with): the run resumes; a value that differs is refused, naming the key."""
    import yaml

    from sihnet.config import config_to_dict, load_config
    from sihnet.errors import SihnetError
    from sihnet.paths import RunPaths
    from sihnet.training.prepare import prepare_run_folder

    paths = RunPaths(tmp_path / "run")
    config = load_config("quick")
    older = config_to_dict(config)
    del older["measured"]  # the run was written before the measured model existed
    paths.root.mkdir()
    paths.config.write_text(yaml.safe_dump(older, sort_keys=False))
    paths.fold_summary(0).parent.mkdir()
    paths.fold_summary(0).write_text("{}")  # a fold has finished: the file may not be replaced
    before = paths.config.read_bytes()
    prepare_run_folder(paths, config)
    assert paths.config.read_bytes() == before
    changed = load_config("quick", overrides={"training": {"epochs": config.training.epochs + 1}})
    with pytest.raises(SihnetError, match=r"training\.epochs"):
        prepare_run_folder(paths, changed)
