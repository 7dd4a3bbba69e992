"""A known sag added to a head changes each distance the reader measures by what the field does to
its two ends (issue 34's measuring stick; on real heads: ``benchmarks/real_heads.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from sihnet.bern import MAMILLOPONTINE, PREPONTINE, SUPRASELLAR
from sihnet.reader.distances import template_directions
from sihnet.schemas import Reading
from sihnet.synth.patient import Acquisition, Baseline, Patient, Signs
from sihnet.synth.render import render
from sihnet.synth.sag_field import SagField, Split, brain_sag, structure_ends

NAMES = {"suprasellar": SUPRASELLAR.name, "mamillopontine": MAMILLOPONTINE.name}
NAMES["prepontine"] = PREPONTINE.name


def ends_of(reading: Reading) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ends = {}
    for key, name in NAMES.items():
        distance = reading.distances[name]
        assert distance.start is not None and distance.end is not None, distance.reason
        ends[key] = (np.asarray(distance.start), np.asarray(distance.end))
    return ends


def test_the_field_moves_one_side_rigidly_and_inverts() -> None:
    up = np.array([0.0, 0.0, 1.0])
    field = SagField(
        (Split(np.zeros(3), up, 2.0, -3.0 * up),), np.zeros(3), np.array([1.0, 0.0, 0.0])
    )
    points = np.array([[0.0, 0.0, 5.0], [0.0, 10.0, -5.0], [0.0, 0.0, 0.0], [40.0, 0.0, 5.0]])
    moved = field.displacement(points)
    assert moved[0] == pytest.approx([0.0, 0.0, -3.0])  # above: lowered 3 mm
    assert moved[1] == pytest.approx([0.0, 0.0, 0.0])  # below: still
    assert moved[2][2] == pytest.approx(-1.5)  # the plane itself: half way
    assert -3.0 < moved[3][2] < -0.3  # 40 mm off the midline: faded
    back = field.inverse(points + moved)
    assert back == pytest.approx(points, abs=1e-4)
    assert field.change(points[0], points[1], up) == pytest.approx(-3.0)


@pytest.fixture(scope="module")
def baseline() -> tuple[np.ndarray, np.ndarray, Reading, np.ndarray, np.ndarray]:
    """A head with normal cisterns, read: (volume, affine, reading, vertical, clivus normal)."""
    from sihnet.preprocessing.registration import align_to_template
    from sihnet.reader.reading import read_scan

    patient = Patient(
        1,
        Signs(),
        Baseline(
            suprasellar_cistern_mm=6.0, prepontine_cistern_mm=6.5, mamillopontine_distance_mm=8.0
        ),
        Acquisition(noise_sd=0.01, rotation_deg=(4.0, -2.0, 3.0), translation_mm=(2.0, -3.0, 1.0)),
    )
    data, affine = render(patient, 2.0)
    volume = data.astype(np.float32)
    alignment = align_to_template(volume, affine, check_mirror=False)
    reading = read_scan(volume, affine, alignment)
    assert reading.problem == "", reading.problem
    vertical, normal = template_directions(alignment.rotation_matrix)
    return volume, affine, reading, vertical, normal


@pytest.mark.slow  # over 10 s: make test-slow, run by CI
@pytest.mark.parametrize(("sag_mm", "brainstem_mm"), [(3.0, 0.0), (2.0, 2.0)])
def test_a_known_sag_changes_each_measured_distance_by_the_fields_change_at_its_ends(
    baseline: tuple[np.ndarray, np.ndarray, Reading, np.ndarray, np.ndarray],
    sag_mm: float,
    brainstem_mm: float,
) -> None:
    from sihnet.reader.reading import read_scan

    volume, affine, before, vertical, normal = baseline
    landmark = np.asarray(before.landmarks["pons_superior"])
    ends = structure_ends(ends_of(before), landmark, vertical)
    field = brain_sag(ends, vertical, normal, sag_mm, brainstem_mm)
    after = read_scan(field.warp(volume, affine), affine)
    directions = {"suprasellar": vertical, "mamillopontine": vertical, "prepontine": normal}
    for key, name in NAMES.items():
        truth = field.change(*ends[key], directions[key])
        b, a = before.items[name], after.items[name]
        assert b is not None and a is not None, after.distances[name].reason
        assert a - b == pytest.approx(truth, abs=0.5), (name, truth, a - b)
    assert field.change(*ends["suprasellar"], vertical) == pytest.approx(-sag_mm, abs=0.05)


@pytest.mark.slow  # reads a head: make test-slow, run by CI
def test_a_sag_that_would_close_a_cistern_is_refused(
    baseline: tuple[np.ndarray, np.ndarray, Reading, np.ndarray, np.ndarray],
) -> None:
    _, _, before, vertical, normal = baseline
    with pytest.raises(ValueError, match="would close"):
        brain_sag(ends_of(before), vertical, normal, 12.0)


def test_the_inverse_converges_where_newton_cycles_across_a_layers_kink() -> None:
    """A sag at 1.5 of its fade and a pons pushed at its fade's width: Newton's steps cycle at a
    few points beside the layers' kinks (residuals of 0.2-1.0 mm after 8 steps before the damped
    fixed point took them over); every point must come back."""
    field = SagField(
        (
            Split(np.zeros(3), np.array([0.0, 0.0, 1.0]), 1.2, np.array([0.0, 0.0, -1.8])),
            Split(
                np.array([0.0, -10.0, -10.0]),
                np.array([0.0, -0.8, 0.6]),
                1.0,
                np.array([0.0, 0.8, -0.6]),
            ),
        ),
        np.zeros(3),
        np.array([1.0, 0.0, 0.0]),
    )
    targets = np.random.default_rng(0).uniform(-80.0, 80.0, (1_000_000, 3))
    sources = field.inverse(targets)
    residual = np.abs(sources + field.displacement(sources) - targets).max()
    assert residual < 1e-5
