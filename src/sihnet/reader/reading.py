"""Read one scan: the six Bern items, the quantities behind them, and how sure the reading is.

The steps (docs/reader.md): the MNI152 similarity alignment, its B-spline refinement around the
midline (:mod:`sihnet.reader.warp`), the three distances on the patient's own edges
(:mod:`sihnet.reader.distances`), the continuous sign measures (:mod:`sihnet.reader.signs`), and
the Bern score by its rules. What cannot be measured says why; nothing is a silent number.
"""

from __future__ import annotations

import time

import numpy as np

from sihnet import landmarks
from sihnet.bern import DISTANCE_FIELDS, SUPRASELLAR, score_fields
from sihnet.bern_reading import BY_NAME, DISTANCE_READINGS, READ_RANGE_MM, SIGN_READINGS
from sihnet.errors import SihnetError
from sihnet.preprocessing.registration import Alignment, align_to_template
from sihnet.reader import contrast, distances, signs
from sihnet.reader.masked import masked_reason
from sihnet.reader.profiles import Profile, Scan
from sihnet.reader.regions import template_regions
from sihnet.reader.warp import MESH, Warp, refine_alignment
from sihnet.schemas import ReadDistance, Reading, ReadMeasure

READER_VERSION = 15  # part of the cache key: raise it with any change of what is read
MAX_SLICE_MM = 3.5  # thicker slices average the midline structures: no distance is read
# The signs' measures (sihnet.bern_reading) and the pituitary's height.
SIGN_MEASURES = (*(str(r.measure) for r in SIGN_READINGS), "pituitary_height_mm")
# The reader's continuous quantities: what a model of the measured items weighs.
FEATURES: tuple[str, ...] = (*SIGN_MEASURES, *DISTANCE_FIELDS)


def features_of(reading: Reading) -> dict[str, float | None]:
    """A reading's continuous quantities (:data:`FEATURES`; None where not measured)."""
    values: dict[str, float | None] = {}
    for name in SIGN_MEASURES:
        measure = reading.measures.get(name)
        values[name] = None if measure is None else measure.value
    for name in DISTANCE_FIELDS:
        distance = reading.distances.get(name)
        values[name] = None if distance is None else distance.mm
    return values


def why_not_measured(reading: Reading) -> str:
    """Each distance and measure of a reading that was not measured, with its reason
    (``"name: why; ..."``; "" when all were)."""
    quantities: dict[str, ReadDistance | ReadMeasure] = {**reading.distances, **reading.measures}
    return "; ".join(f"{k}: {q.reason}" for k, q in quantities.items() if q.reason)


def items_not_measured(reading: Reading) -> dict[str, str]:
    """Why each Bern item of a reading was not measured ({} when all were)."""
    reasons = {}
    for item, value in reading.items.items():
        if value is None:
            measure = BY_NAME[item].measure
            quantity = reading.measures.get(measure) if measure else reading.distances.get(item)
            reasons[item] = quantity.reason if quantity is not None else "not read"
    return reasons


def is_consistent(reading: Reading) -> bool:
    """Whether a reading (a cached record, say) agrees with itself: this reader's version, each
    sign called by its measure and threshold, each distance's item its measured mm, the score the
    Bern rules give its items. An edited record (a score of 99, a sign flipped) does not."""
    if reading.version != READER_VERSION:
        return False
    if reading.problem:
        return not reading.items and reading.bern_score_min is None
    expected: dict[str, float | None] = {}
    for sign in SIGN_READINGS:
        read = reading.measures.get(str(sign.measure))
        value = None if read is None else read.value
        expected[sign.name] = None if value is None else sign.call(value)
    for name in DISTANCE_FIELDS:
        distance = reading.distances.get(name)
        mm = None if distance is None else distance.mm
        expected[name] = None if mm is None else round(max(mm, 0.0), 2)
    score = score_fields(expected)
    return reading.items == expected and (reading.bern_score_min, reading.bern_score_max) == (
        score.score_min,
        score.score_max,
    )


def _not_read(reason: str, seconds: float, alignment: Alignment | None = None) -> Reading:
    return Reading(
        version=READER_VERSION,
        problem=reason,
        seconds=round(seconds, 2),
        alignment_correlation=None if alignment is None else alignment.correlation,
    )


def _csf_level(
    scan: Scan, points: dict[str, np.ndarray], vertical: np.ndarray, normal: np.ndarray
) -> float:
    """The CSF intensity from the midline cisterns: the 5th percentile of the profiles around the
    landmarks, smoothed over 1 mm (bone, darker still, moves it a little)."""
    from scipy import ndimage

    values = []
    lines = {"vertical": vertical, "clivus_normal": normal}
    for reading in DISTANCE_READINGS:
        assert reading.start is not None and reading.direction is not None
        profile = Profile.along(
            scan, points[reading.start.name], lines[reading.direction], -8.0, 4.0
        )
        finite = profile.values[np.isfinite(profile.values)]
        if finite.size > 10:
            values.append(ndimage.uniform_filter1d(finite, 10))
    if not values:
        return float("nan")
    return float(np.percentile(np.concatenate(values), 5))


def read_scan(
    volume: np.ndarray, affine: np.ndarray, alignment: Alignment | None = None
) -> Reading:
    """Read a scan (I, J, K) with its RAS affine (module docstring).

    Args:
        alignment: its similarity alignment when already known (the cache's), else computed.
    """
    started = time.perf_counter()
    volume = np.nan_to_num(np.asarray(volume, dtype=np.float32))
    alignment = alignment or align_to_template(volume, affine, check_mirror=False)
    if alignment.problem:
        return _not_read(
            f"not measured: {alignment.problem}", time.perf_counter() - started, alignment
        )
    masked = masked_reason(Scan(volume, affine), alignment)
    if masked:
        return _not_read(f"not measured: {masked}", time.perf_counter() - started, alignment)
    warp, problem = _refined(volume, affine, alignment)
    if warp is None:
        return _not_read(f"not measured: {problem}", time.perf_counter() - started, alignment)
    scan = Scan(volume, affine)
    rotation = alignment.rotation_matrix
    vertical, normal = distances.template_directions(rotation)
    placed = warp.to_world(np.stack([lm.point for lm in landmarks.BRAIN_LANDMARKS]))
    points = {lm.name: p for lm, p in zip(landmarks.BRAIN_LANDMARKS, placed, strict=True)}
    regions = template_regions()
    white = float(np.nanmedian(scan.sample(alignment.to_world(regions.white_matter))))
    csf = _csf_level(scan, points, vertical, normal)
    if not (np.isfinite(white) and np.isfinite(csf) and white > csf):
        return _not_read(
            "not measured: the scan shows no contrast between white matter and CSF",
            time.perf_counter() - started,
            alignment,
        )
    read = [
        _thin_enough(_plausible(d), scan) for d in _distances(scan, points, rotation, csf, white)
    ]
    measures = _sign_measures(scan, alignment, rotation, white, csf)
    # under the plausible suprasellar edge only: an implausible one is not the gland's top
    suprasellar = BY_NAME[SUPRASELLAR.name]
    assert suprasellar.start is not None
    chiasm = points[suprasellar.start.name]
    cistern = next(d for d in read if d.name == SUPRASELLAR.name)
    measures |= _pituitary(scan, cistern, chiasm, vertical, csf, white)
    measures = contrast.without_contrast(measures)
    return _reading(
        read, measures, alignment, warp, white, csf, points, time.perf_counter() - started
    )


def _distances(
    scan: Scan, points: dict[str, np.ndarray], rotation: np.ndarray, csf: float, white: float
) -> list[distances.Distance]:
    """The three Bern distances as :data:`sihnet.bern_reading.READINGS` reads them (world mm):
    a cistern from its landmark across the CSF, a distance between two landmarks' levels."""
    vertical, normal = distances.template_directions(rotation)
    lines = {"vertical": vertical, "clivus_normal": normal}
    read = []
    for item in DISTANCE_READINGS:
        assert item.start is not None and item.direction is not None
        start, line = points[item.start.name], lines[item.direction]
        if item.end is None:
            read.append(distances.cistern(item.name, scan, start, line, csf, white))
        else:
            end = points[item.end.name]
            read.append(distances.between_levels(item.name, scan, start, end, line, csf))
    return read


def _pituitary(
    scan: Scan,
    suprasellar: distances.Distance,
    chiasm: np.ndarray,
    vertical: np.ndarray,
    csf: float,
    white: float,
) -> dict[str, signs.Measure]:
    """The gland's height and brightness under the suprasellar cistern's lower edge."""
    if suprasellar.end is None:
        why = "the suprasellar cistern was not measured"
        return {
            "pituitary_height_mm": signs.Measure(None, "mm", why),
            "pituitary_enhancement": signs.Measure(None, contrast.UNIT, why),
        }
    line = Profile.along(scan, chiasm, vertical, -30.0, 6.0)
    top = float((np.asarray(suprasellar.end) - chiasm) @ vertical)
    return {
        "pituitary_height_mm": signs.pituitary_height(line, top, csf),
        "pituitary_enhancement": contrast.gland_brightness(line, top, white),
    }


def _refined(
    volume: np.ndarray, affine: np.ndarray, alignment: Alignment
) -> tuple[Warp | None, str]:
    """The deformable refinement, tried again with one B-spline cell per axis (stiffer) when it
    folds, diverges or fits worse; ``(None, why)`` when neither is usable."""
    problem = ""
    for mesh in (MESH, 1):
        try:
            warp = refine_alignment(volume, affine, alignment, mesh)
        except SihnetError as error:
            problem = str(error)
            continue
        if not warp.problem:
            return warp, ""
        problem = warp.problem
    return None, problem


def _thin_enough(distance: distances.Distance, scan: Scan) -> distances.Distance:
    """A distance is not read on slices thicker than ``MAX_SLICE_MM``: a 5 mm slice averages the
    chiasm, the cistern and the gland across the midline (on synthetic heads resliced to 5 mm the
    suprasellar cistern read 1.2 mm for 5.1, the pituitary 11.2 mm for 4.3)."""
    thickest = float(scan.spacing_mm.max())
    if thickest <= MAX_SLICE_MM:
        return distance
    return distances.Distance(
        distance.name,
        None,
        reason=f"slices {thickest:.1f} mm thick: the midline cisterns need {MAX_SLICE_MM} mm or less",
    )


def _plausible(distance: distances.Distance) -> distances.Distance:
    """A distance outside the reader's range (``READ_RANGE_MM``: beyond any adult's, or edges
    crossing by more than the blur) was read off the wrong structures: not measured, with the
    value in the reason."""
    low, high = READ_RANGE_MM
    if distance.mm is None or low <= distance.mm <= high:
        return distance
    return distances.Distance(
        distance.name,
        None,
        reason=f"{distance.mm:.1f} mm is beyond any head's: the landmarks were not where the "
        "anatomy puts them",
    )


def _sign_measures(
    scan: Scan, alignment: Alignment, rotation: np.ndarray, white: float, csf: float
) -> dict[str, signs.Measure]:
    regions = template_regions()
    return {
        "dural_enhancement": signs.dural_enhancement(
            scan,
            regions.convexity,
            alignment.to_world(regions.convexity.points),
            rotation,
            white,
            csf,
        ),
        "sinus_height_mm": signs.sinus_height(
            scan,
            regions.sagittal_sinus,
            alignment.to_world(regions.sagittal_sinus.points),
            rotation,
        ),
        "subdural_fluid_mm": signs.subdural_fluid(
            scan, regions.lateral, alignment.to_world(regions.lateral.points), rotation, white, csf
        ),
        "sinus_enhancement": contrast.sinus_brightness(
            scan,
            regions.sagittal_sinus,
            alignment.to_world(regions.sagittal_sinus.points),
            rotation,
            white,
        ),
    }


def _reading(
    read: list[distances.Distance],
    measures: dict[str, signs.Measure],
    alignment: Alignment,
    warp: Warp,
    white: float,
    csf: float,
    points: dict[str, np.ndarray],
    seconds: float,
) -> Reading:
    items: dict[str, float | None] = {}
    for sign in SIGN_READINGS:
        value = _fixed(measures[str(sign.measure)].value)
        items[sign.name] = None if value is None else sign.call(value)
    for distance in read:
        mm = _fixed(distance.mm)
        items[distance.name] = None if mm is None else round(max(mm, 0.0), 2)
    score = score_fields(items)
    return Reading(
        version=READER_VERSION,
        items=items,
        bern_score_min=score.score_min,
        bern_score_max=score.score_max,
        distances={
            d.name: ReadDistance(
                mm=_fixed(d.mm),
                start=None if d.start is None else _fixed_point(d.start),
                end=None if d.end is None else _fixed_point(d.end),
                reason=d.reason,
            )
            for d in read
        },
        measures={
            name: ReadMeasure(value=_fixed(m.value), unit=m.unit, reason=m.reason)
            for name, m in measures.items()
        },
        landmarks={name: _fixed_point(p) for name, p in points.items()},
        rotation=tuple(_fixed_point(row) for row in alignment.rotation_matrix),  # type: ignore[arg-type]
        alignment_correlation=alignment.correlation,
        warp_information=(warp.information_before, warp.information_after),
        white_matter_level=_fixed(white),
        csf_level=_fixed(csf),
        seconds=round(seconds, 2),
    )


def _fixed(value: float | None) -> float | None:
    """A quantity to 1e-6 of its unit (mm, intensity): the last bits of a CPU's BLAS kernels
    (AVX2 or AVX-512) differ, and a reading is the same on every machine."""
    return None if value is None else round(float(value), 6)


def _fixed_point(point: np.ndarray | tuple[float, ...]) -> tuple[float, float, float]:
    """A world point (3,) to 1e-6 mm (:func:`_fixed`)."""
    return (round(float(point[0]), 6), round(float(point[1]), 6), round(float(point[2]), 6))
