from pathlib import Path

import numpy as np
import pytest

from sihnet.data.splits import check_no_leakage, inner_split, load_splits, make_splits, save_splits
from sihnet.errors import SihnetError


def labels(n_pos: int, n_neg: int) -> dict[str, int]:
    return {f"P{i:03d}": int(i < n_pos) for i in range(n_pos + n_neg)}


def test_every_patient_in_exactly_one_fold_and_folds_are_stratified() -> None:
    patients = labels(66, 63)
    assignment = make_splits(patients, folds=5, seed=1)
    assert set(assignment) == set(patients)
    for fold in range(5):
        fold_labels = [patients[p] for p, f in assignment.items() if f == fold]
        assert 25 <= len(fold_labels) <= 27
        assert 12 <= sum(fold_labels) <= 14  # 66/5 positives per fold, +/- 1


def test_seed_makes_splits_reproducible_and_different() -> None:
    patients = labels(20, 20)
    assert make_splits(patients, 5, seed=3) == make_splits(patients, 5, seed=3)
    assert make_splits(patients, 5, seed=3) != make_splits(patients, 5, seed=4)


def test_group_kfold_is_selectable() -> None:
    assignment = make_splits(labels(10, 10), 5, splitter="group", seed=0)
    assert sorted(np.bincount(list(assignment.values())).tolist()) == [4, 4, 4, 4, 4]


def test_saved_splits_are_reused(tmp_path: Path) -> None:
    assignment = make_splits(labels(10, 10), 5, seed=0)
    save_splits(tmp_path / "splits.json", assignment, 5, "stratified_group", 0)
    assert load_splits(tmp_path / "splits.json") == (assignment, 5)


def test_hand_edited_splits_with_a_patient_twice_fail(tmp_path: Path) -> None:
    (tmp_path / "splits.json").write_text('{"folds": 2, "assignment": {"P1": 0, "P2": 1, "P1": 1}}')
    with pytest.raises(SihnetError, match="more than one fold"):
        load_splits(tmp_path / "splits.json")


def test_leakage_check() -> None:
    check_no_leakage(["a", "b"], ["c"])
    with pytest.raises(SihnetError, match="leakage"):
        check_no_leakage(["a", "b"], ["b"])


@pytest.mark.parametrize(
    ("patients", "message"),
    [
        (labels(2, 2), "fewer than 5 folds"),
        (labels(0, 10), "one class"),
        (labels(3, 10), "smaller class"),
    ],
)
def test_impossible_splits(patients: dict[str, int], message: str) -> None:
    with pytest.raises(SihnetError, match=message):
        make_splits(patients, 5)


def test_inner_split_is_disjoint_and_holds_both_classes() -> None:
    patients = labels(40, 40)
    train, validation = inner_split(patients, 0.2, seed=0)
    check_no_leakage(train, validation)
    assert set(train) | set(validation) == set(patients)
    assert {patients[p] for p in validation} == {0, 1}
    assert 12 <= len(validation) <= 20


def test_identical_images_under_two_ids_are_refused_or_grouped() -> None:
    from sihnet.data.splits import patient_groups
    from sihnet.errors import SihnetError

    scans = [(2, "P1", "aaa"), (3, "P2", "bbb"), (4, "P3", "aaa"), (5, "P1", "ccc")]
    with pytest.raises(SihnetError, match=r"rows 2 and 4 hold identical images .*'P1', 'P3'"):
        patient_groups(scans, group_identical=False)
    groups = patient_groups(scans, group_identical=True)
    assert groups["P1"] == groups["P3"] and "P2" not in groups
    labels = {f"P{i}": i % 2 for i in range(1, 21)}
    assignment = make_splits(labels, 5, seed=0, groups=groups)
    assert assignment["P1"] == assignment["P3"]
    assert assignment == make_splits(labels, 5, seed=0, groups=groups)  # reproducible
