from pathlib import Path

import pytest

from sihnet.config import PROFILES, config_from_dict, config_to_dict, load_config
from sihnet.errors import SihnetError


def test_paper_profile_is_the_papers_recipe() -> None:
    config = load_config("paper")
    assert config.preprocessing.spacing_mm == 1.0
    assert config.preprocessing.size == (240, 260, 260)
    assert (
        config.training.learning_rate,
        config.training.weight_decay,
        config.training.batch_size,
    ) == (1e-3, 0.1, 4)
    assert (config.training.epochs, config.training.restart_epochs) == (450, 200)
    assert config.cross_validation.folds == 5


def test_quick_profile_overrides_and_command_line_overrides() -> None:
    config = load_config("quick", overrides={"training": {"epochs": 3}, "seed": 7})
    assert config.preprocessing.spacing_mm == PROFILES["quick"]["preprocessing"]["spacing_mm"]
    assert config.training.epochs == 3 and config.seed == 7


def test_yaml_file_overrides(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("training:\n  selection: last\npreprocessing:\n  size: [32, 40, 48]\n")
    config = load_config("quick", file)
    assert config.training.selection == "last"
    assert config.preprocessing.size == (32, 40, 48)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training:\n  epoch: 3\n", "unknown key training.epoch"),
        ("bogus: 1\n", "unknown key bogus"),
        ("training:\n  epochs: many\n", "must be an integer"),
        ("training:\n  selection: best\n", "must be one of"),
        ("preprocessing:\n  size: [16, 16, 16]\n", "at least 32"),
        ("cross_validation:\n  folds: 1\n", "folds must be >= 2"),
        ("- a\n- b\n", "mapping"),
        (  # issue 31 row 7: ONNX would rename the whole head's input and lose its batch axis
            "preprocessing:\n  align: mni152\n  views:\n  - {name: image}\n",
            "none of \\['image', 'main'\\]",
        ),
        ("measured:\n  fusion: vote\n", "must be one of"),
        # issue 37 row 13: refused before any work, not inside scikit-learn after fold 0 trained
        ("measured:\n  penalty_c: -1\n", "measured.penalty_c must be a positive number"),
        ("measured:\n  penalty_c: .nan\n", "measured.penalty_c must be a positive number"),
        ("measured:\n  penalty_c: 0\n", "measured.penalty_c must be a positive number"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(SihnetError, match=message):
        load_config("quick", file)


def test_unknown_profile() -> None:
    with pytest.raises(SihnetError, match="unknown profile"):
        load_config("fast")


def test_resolved_config_round_trips() -> None:
    config = load_config("quick", overrides={"cross_validation": {"splitter": "group"}})
    assert config_from_dict(config_to_dict(config)) == config


def test_the_paper_profile_trains_the_papers_network_unchanged() -> None:
    from monai.networks.nets import DenseNet121

    from sihnet.config import load_config
    from sihnet.models.densenet import build_model

    config = load_config("paper")
    prep = config.preprocessing
    assert (prep.spacing_mm, prep.size, prep.align, prep.views) == (
        1.0,
        (240, 260, 260),
        "field_of_view",
        (),
    )
    assert not config.bern_heads.enabled and config.training.precision == "fp32"
    model = build_model(
        config.training.activation_checkpointing, config.bern_heads.enabled, prep.views
    )
    assert type(model) is DenseNet121
    assert sum(p.numel() for p in model.parameters()) == 11_244_674
