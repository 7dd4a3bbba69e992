"""Patient-level cross-validation splits, made once with a seed, saved to ``splits.json``, reused.

scikit-learn's ``StratifiedGroupKFold`` (default) or ``GroupKFold`` (the paper's literal choice)
over patients; every scan of a patient follows its patient.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from sihnet.atomic import write_text_atomic
from sihnet.errors import SihnetError
from sihnet.schemas import SplitsFile


def make_splits(
    patient_labels: Mapping[str, int | None],
    folds: int,
    splitter: str = "stratified_group",
    seed: int = 0,
    groups: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Assign every patient to one validation fold.

    Args:
        patient_labels: patient_id -> label (0/1).
        folds: number of folds K.
        splitter: ``stratified_group`` or ``group``.
        seed: shuffling seed.
        groups: patient_id -> group; patients of one group share a fold (e.g. the same scan
            under two IDs). Default: each patient its own group.

    Returns:
        patient_id -> fold index in [0, K), in the input's patient order.
    """
    patients = list(patient_labels)
    labels = np.array([patient_labels[p] for p in patients])
    if len(patients) < folds:
        raise SihnetError(f"{len(patients)} patients are fewer than {folds} folds")
    if len(set(labels.tolist())) < 2:
        raise SihnetError(
            "the cohort holds one class only; cross-validated AUROC needs both labels"
        )
    if splitter == "stratified_group":
        minority = int(min((labels == 0).sum(), (labels == 1).sum()))
        if minority < folds:
            raise SihnetError(
                f"the smaller class has {minority} patients, fewer than {folds} folds"
            )
        kfold: Any = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    elif splitter == "group":
        kfold = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        raise SihnetError(f"unknown splitter {splitter!r}")
    names = [(groups or {}).get(p, p) for p in patients]
    group_ids = np.array([names.index(name) for name in names])
    assignment: dict[str, int] = {}
    split = kfold.split(np.zeros(len(patients)), labels, group_ids)
    for fold, (_, validation) in enumerate(split):
        for index in validation:
            assignment[patients[index]] = fold
    return {p: assignment[p] for p in patients}


def patient_groups(scans: Iterable[tuple[int, str, str]], group_identical: bool) -> dict[str, str]:
    """Patients that share an identical image (same content hash under two IDs).

    Args:
        scans: ``(manifest row, patient_id, content hash)`` per scan.
        group_identical: put such patients in one group; otherwise refuse.

    Returns:
        patient_id -> group name (the first patient of its group), for patients in a group.

    Raises:
        SihnetError: identical images under two patient IDs, naming both rows.
    """
    first: dict[str, tuple[int, str]] = {}
    parent: dict[str, str] = {}

    def root(patient: str) -> str:
        while parent.get(patient, patient) != patient:
            patient = parent[patient]
        return patient

    for row, patient, digest in scans:
        if digest not in first:
            first[digest] = (row, patient)
            continue
        other_row, other = first[digest]
        if other == patient:
            continue
        if not group_identical:
            raise SihnetError(
                f"rows {other_row} and {row} hold identical images under two patient IDs "
                f"({other!r}, {patient!r}): they would leak across the split; remove one, or "
                "set cross_validation.identical_images: group"
            )
        parent[root(patient)] = root(other)
    return {p: root(p) for p in parent} | {root(p): root(p) for p in parent}


def inner_split(
    patient_labels: Mapping[str, int | None],
    fraction: float,
    seed: int,
    groups: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Stratified patient-level holdout of the training patients for ``inner`` checkpoint selection.

    Returns:
        ``(inner_train, inner_validation)`` patient ids; validation is ~``fraction`` of patients.
    """
    patients = list(patient_labels)
    labels = np.array([patient_labels[p] for p in patients])
    minority = int(min((labels == 0).sum(), (labels == 1).sum()))
    if minority < 2:
        raise SihnetError(
            f"inner selection: the smaller class has {minority} training patient(s); "
            "use selection 'last' or 'paper'"
        )
    # Small cohorts: fewer inner groups (a larger validation share) so both classes appear.
    n_splits = max(2, min(round(1 / fraction), minority))
    kfold = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    names = [(groups or {}).get(p, p) for p in patients]
    group_ids = np.array([names.index(name) for name in names])
    train, validation = next(kfold.split(np.zeros(len(patients)), labels, group_ids))
    return [patients[i] for i in train], [patients[i] for i in validation]


def check_no_leakage(train_ids: Iterable[str], validation_ids: Iterable[str]) -> None:
    """Fail if any patient is on both sides of a split."""
    shared = set(train_ids) & set(validation_ids)
    if shared:
        raise SihnetError(
            f"split leakage: {len(shared)} patient(s) in both training and validation"
        )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        duplicated = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"patient {duplicated!r} is assigned to more than one fold")
    return dict(pairs)


def splits_text(assignment: Mapping[str, int], folds: int, splitter: str, seed: int) -> str:
    """``splits.json``'s text (:class:`sihnet.schemas.SplitsFile`): the settings and
    patient_id -> fold."""
    value = SplitsFile(folds=folds, splitter=splitter, seed=seed, assignment=dict(assignment))
    return json.dumps(value.model_dump(), indent=2) + "\n"


def save_splits(
    path: Path, assignment: Mapping[str, int], folds: int, splitter: str, seed: int
) -> None:
    """Write ``splits.json`` atomically."""
    write_text_atomic(path, splits_text(assignment, folds, splitter, seed))


def load_splits(path: Path) -> tuple[dict[str, int], int]:
    """Read ``splits.json``; checks that every patient is in exactly one valid fold.

    Returns:
        ``(assignment, folds)``.
    """
    try:
        record = SplitsFile.model_validate(
            json.loads(Path(path).read_text(), object_pairs_hook=_no_duplicate_keys)
        )
    except OSError as error:
        raise SihnetError(f"cannot read {Path(path).name}: {error.strerror}") from None
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise SihnetError(f"cannot read {Path(path).name}: {where}: {first['msg']}") from None
    except ValueError as error:
        raise SihnetError(f"cannot read {Path(path).name}: {error}") from None
    assignment, folds = record.assignment, record.folds
    bad = [p for p, f in assignment.items() if not 0 <= f < folds]
    if bad:
        raise SihnetError(f"{Path(path).name}: a patient has a fold outside 0..{folds - 1}")
    return assignment, folds
