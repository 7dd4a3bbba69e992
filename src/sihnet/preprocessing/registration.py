"""Align a head to the MNI152 template (nilearn's ICBM 2009a brain) with SimpleITK, and say when it
failed.

SimpleITK (ITK's registration framework) over ANTsPy and itk-elastix: its wheel is small, it runs
an affine registration of a 2 mm head in about a second on two cores, and its transforms are plain
matrices we can store; ANTs' strength (SyN, deformable) is not needed for where the sella is.

The registration is a similarity transform (rotation, translation, one scale: 7 degrees of
freedom) that maps template mm to the scan's world mm, found by Mattes mutual information inside the
template's brain mask (the scalp and skull of a CE-T1 are not in the template) from a
centre-of-mass start, over three resolutions (8, 4, 2 mm). The views are then cut with its rotation
and the position it gives, never its scale: distances stay in the patient's millimetres.

Intensities are scaled by the 80th percentile of the head (voxels above the scan's mean) and
clipped at it before registering: what is brighter is contrast — enhancing dura, sinuses, vessels —
which the unenhanced template does not have. Scaled by the 99.5th percentile instead, 3 of 60
synthetic heads with strong pachymeningeal enhancement (fistula patients) registered to a
correlation of 0.12–0.22 and were refused; at the 90th all 60 aligned (0.61–0.97)
(``benchmarks/registration_benchmark.py``). On the generator with varying anatomy (December
2026) the 90th still refused 2 of 40 heads (0.35, 0.46; cohort ``dev1`` of
``benchmarks/reader_benchmark.py``); at the 80th none (0.55-0.85, median 0.69).

Quality: the Pearson correlation between the template and the aligned scan inside the brain mask,
and inside the brain's interior (8 mm in from its surface: ventricles, white and grey matter; a
bright ball fills the mask and correlates 0.50 there, but -0.06 inside, where heads read 0.16-0.68),
the scale, and the rotation. The correlation says "a head", not "aligned to the millimetre": on
real heads (``benchmarks/alignment_quality.py``) a right alignment of an ordinary 2D T1 with
4.8 mm slices and the neck reads 0.46, while a 1 mm or 2 mm head shifted 6 mm on purpose still
reads 0.46-0.61; so the mask's limit is 0.4 (it was 0.5, which refused those 2D T1s), and the
interior's 0.1 keeps the ball out. Averaging the template over the scan's slice thickness before
correlating (like with like) raised the 2D T1s by 0.01 only: not kept. A non-head image, a neck-only field of view or a registration that
diverged gives a low correlation or an implausible scale and is refused for training (a warning in
``predict``). The same registration of the left-right mirror of the scan tells a flipped header
where the head is asymmetric enough to tell (the ICBM 2009a template is nearly symmetric; a
synthetic head built on it cannot show a flip).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from sihnet.errors import SihnetError
from sihnet.preprocessing.head import head_starts
from sihnet.template import mni152_brain_2mm, sitk_image

MIN_CORRELATION = 0.4  # template vs aligned scan inside the brain mask; heads score 0.46-0.9
MIN_INTERIOR_CORRELATION = 0.1  # inside the brain's interior; heads 0.16-0.68, a ball -0.06
NEGATIVE_SHARE = 0.1  # a magnitude image's darkest 1% is not below -10% of its brightest 1%
SCALE_RANGE = (0.75, 1.33)  # adult heads against the template
MAX_ROTATION_DEG = 45.0
MIRROR_MARGIN = 0.05  # the mirrored scan must fit this much better to call the header flipped
CLIP_PERCENTILE = 80.0  # of the head's intensities: brighter is enhancement (module docstring)
SAMPLING_SEED = 20261205
LPS = np.diag([-1.0, -1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class Alignment:
    """Template (MNI mm) -> scan world (mm): ``world = scale * rotation @ mni + translation``.

    Attributes:
        correlation: Pearson r of template and aligned scan inside the brain mask.
        mirrored_correlation: the same for the scan's left-right mirror (None: not checked).
        interior_correlation: the same inside the brain's interior (None: not computed).
        problem: why the alignment must not be used, or "" when it is usable.
    """

    rotation: tuple[tuple[float, ...], ...]
    translation: tuple[float, float, float]
    scale: float
    correlation: float
    mirrored_correlation: float | None = None
    interior_correlation: float | None = None
    problem: str = ""

    @property
    def rotation_matrix(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=np.float64)

    @property
    def rotation_deg(self) -> float:
        """The rotation's angle, degrees."""
        cosine = (np.trace(self.rotation_matrix) - 1) / 2
        return math.degrees(math.acos(float(np.clip(cosine, -1.0, 1.0))))

    @property
    def flipped(self) -> bool:
        """Whether the mirrored scan fits the template clearly better (a flipped header)."""
        return (
            self.mirrored_correlation is not None
            and self.mirrored_correlation > self.correlation + MIRROR_MARGIN
        )

    def to_world(self, mni: np.ndarray) -> np.ndarray:
        """Template points (N, 3) or (3,) in mm -> the scan's world mm."""
        points = np.asarray(mni, dtype=np.float64)
        return points @ (self.scale * self.rotation_matrix).T + np.asarray(self.translation)

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "rotation_deg": self.rotation_deg}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Alignment:
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in values.items() if k in names}
        kept["rotation"] = tuple(tuple(float(x) for x in row) for row in kept["rotation"])
        kept["translation"] = tuple(float(x) for x in kept["translation"])
        alignment = cls(**kept)  # the problem by today's limits, not the ones it was stored with
        return dataclasses.replace(alignment, problem=problem_of(alignment))


_ITK_THREADS = threading.Lock()
_ITK_USERS = [0, 0]  # registrations running now; the thread count to give back after the last


@contextlib.contextmanager
def one_itk_thread() -> Iterator[None]:
    """ITK's global default thread count at 1 while any registration runs: a registration with
    more threads is not deterministic. ITK's Mattes metric adds the threads' joint histograms
    under a lock in whichever order they finish, and ``ImageRegistrationMethod.SetNumberOfThreads(1)``
    does not reach it (SimpleITK 2.5): the same scan aligned twice differed in the 8th digit, which
    the reader's edge thresholds turned into millimetres (issue 37). Counted, so that registrations
    running side by side in threads (the mirror check) keep it at 1 until the last ends."""
    import SimpleITK as sitk

    with _ITK_THREADS:
        if _ITK_USERS[0] == 0:
            _ITK_USERS[1] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        _ITK_USERS[0] += 1
    try:
        yield
    finally:
        with _ITK_THREADS:
            _ITK_USERS[0] -= 1
            if _ITK_USERS[0] == 0:
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(_ITK_USERS[1])


@functools.lru_cache(maxsize=1)
def template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nilearn's MNI152 brain at 2 mm: intensities (background exactly 0: nilearn's carries
    values of 1e-45..1e-17), the brain mask dilated by 4 mm, and the affine."""
    from scipy import ndimage

    stored, affine = mni152_brain_2mm()
    data = np.where(stored < 1e-6, np.float32(0), stored)
    mask = ndimage.binary_dilation(data > 0.05, iterations=2)
    return data, mask, affine


@functools.lru_cache(maxsize=1)
def _interior() -> np.ndarray:
    """The template brain's interior: 8 mm (4 voxels) in from its surface."""
    from scipy import ndimage

    data, _, _ = template()
    return ndimage.binary_erosion(data > 0.05, iterations=4)


def _downsampled(
    volume: np.ndarray, affine: np.ndarray, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """The scan at about ``spacing_mm`` (block means along finer axes): registration needs no more."""
    steps = np.maximum(1, np.floor(spacing_mm / np.sqrt((affine[:3, :3] ** 2).sum(0)))).astype(int)
    if (steps == 1).all():
        return volume, affine
    shape = (np.asarray(volume.shape) // steps) * steps
    cropped = volume[: shape[0], : shape[1], : shape[2]]
    blocks = cropped.reshape(shape[0] // steps[0], steps[0], shape[1] // steps[1], steps[1],
                             shape[2] // steps[2], steps[2]).mean(axis=(1, 3, 5))  # fmt: skip
    scaled = affine.copy()
    scaled[:3, :3] = affine[:3, :3] * steps
    scaled[:3, 3] = affine[:3, 3] + affine[:3, :3] @ ((steps - 1) / 2)
    return blocks.astype(np.float32), scaled


def _method(mask: Any, shrink: list[int], iterations: int) -> Any:
    """Mattes mutual information in the template's brain, regular gradient descent (LPS, physical
    shifts as scales), one thread, a fixed sampling seed."""
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricFixedMask(mask)
    method.SetMetricSamplingStrategy(method.REGULAR)
    # a fixed seed: SimpleITK reads seed 0 as "the wall clock" (a different alignment each run)
    method.SetMetricSamplingPercentage(0.25, seed=SAMPLING_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations, relaxationFactor=0.6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(shrink)
    method.SetSmoothingSigmasPerLevel([f / 2 for f in shrink])
    method.SetNumberOfThreads(1)
    return method


def _register(moving: Any, fixed: Any, mask: Any, starts: list[np.ndarray]) -> tuple[Any, float]:
    """Similarity transform (fixed = template -> moving = scan, physical LPS) and the final metric.

    Each start (a template -> scan shift, RAS mm; the first is the centres of mass) is registered
    at 8 mm; the one that fits best goes on at 4 and 2 mm. A head-and-neck field of view puts the
    centre of mass in the neck, and an oblique or partial one far from the brain: the head's own
    top (:mod:`sihnet.preprocessing.head`) is a start that does not depend on either."""
    import SimpleITK as sitk

    moments = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Similarity3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    best: tuple[float, Any] | None = None
    for k, shift in enumerate(starts):
        start = sitk.Similarity3DTransform(moments)
        if k > 0:
            start.SetTranslation((LPS @ shift).tolist())
            start.SetCenter((0.0, 0.0, 0.0))
        coarse = _method(mask, [4], 100)
        coarse.SetInitialTransform(start, inPlace=True)
        coarse.Execute(fixed, moving)
        metric = float(coarse.GetMetricValue())
        if best is None or metric < best[0]:
            best = (metric, start)
    assert best is not None
    method = _method(mask, [2, 1], 200)
    method.SetInitialTransform(best[1], inPlace=False)
    transform = method.Execute(fixed, moving)
    return transform, float(method.GetMetricValue())


def _correlation(
    moving: Any, fixed: Any, transform: Any, masks: tuple[np.ndarray, ...]
) -> tuple[float, ...]:
    """Pearson r of the template and the aligned scan inside each mask (0 where either is flat)."""
    import SimpleITK as sitk

    aligned = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0))
    scan = np.transpose(aligned, (2, 1, 0))
    reference = np.transpose(sitk.GetArrayFromImage(fixed), (2, 1, 0))
    values = []
    for mask in masks:
        a, b = scan[mask], reference[mask]
        values.append(0.0 if a.std() == 0 or b.std() == 0 else float(np.corrcoef(a, b)[0, 1]))
    return tuple(values)


def _as_ras(transform: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """ITK's template -> scan similarity (LPS) as RAS: (rotation, translation, scale)."""
    import SimpleITK as sitk

    similarity = sitk.Similarity3DTransform(sitk.CompositeTransform(transform).GetNthTransform(0))
    matrix = np.asarray(similarity.GetMatrix(), dtype=np.float64).reshape(3, 3)
    centre = np.asarray(similarity.GetCenter(), dtype=np.float64)
    shift = np.asarray(similarity.GetTranslation(), dtype=np.float64)
    offset = shift + centre - matrix @ centre  # x_moving = matrix @ x_fixed + offset (LPS)
    lps = np.diag([-1.0, -1.0, 1.0])
    ras_matrix, ras_offset = lps @ matrix @ lps, lps @ offset
    scale = float(np.cbrt(abs(np.linalg.det(ras_matrix))))
    return ras_matrix / scale, ras_offset, scale


def align_to_template(
    volume: np.ndarray, affine: np.ndarray, check_mirror: bool = True
) -> Alignment:
    """Register one scan (I, J, K) with its RAS affine to the MNI152 template (module docstring);
    the same image gives the same alignment bit for bit, whatever the thread count.

    Raises:
        SihnetError: SimpleITK could not register it at all (the registration diverged).
    """
    with one_itk_thread():
        return _align(volume, affine, check_mirror)


def _align(volume: np.ndarray, affine: np.ndarray, check_mirror: bool) -> Alignment:
    import SimpleITK as sitk

    low, high = (float(v) for v in np.nanpercentile(volume, [1, 99]))
    if high <= 0 or low < -NEGATIVE_SHARE * high:
        raise SihnetError(
            f"its intensities run to {low:.3g} below zero against {high:.3g} above: not a "
            "magnitude image (a phase or difference image, or inverted scaling)"
        )

    data, mask, template_affine = template()
    fixed = sitk_image(data, template_affine)
    fixed_mask = sitk.Cast(sitk_image(mask.astype(np.uint8), template_affine), sitk.sitkUInt8)
    small, small_affine = _downsampled(np.clip(volume, 0, None).astype(np.float32), affine, 2.0)
    head = small[small > small.mean()]
    upper = float(np.percentile(head, CLIP_PERCENTILE)) if head.size else 1.0
    small = np.minimum(small / max(upper, 1e-12), 1.0)
    moving = sitk_image(small, small_affine)
    brain = data > 0.05
    starts = [np.zeros(3), *head_starts(small, small_affine, brain, template_affine)]
    mirror = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as side:
        if check_mirror:  # the scan's left-right mirror, registered beside it (ITK frees the GIL)
            flip = np.diag([-1.0, 1.0, 1.0, 1.0]) @ small_affine
            mirror = side.submit(_mirror_correlation, small, flip, fixed, fixed_mask, brain)
        try:
            transform, _ = _register(moving, fixed, fixed_mask, starts)
        except RuntimeError:
            raise SihnetError("the registration to the MNI152 template diverged") from None
        rotation, translation, scale = _as_ras(transform)
        correlation, interior = _correlation(moving, fixed, transform, (mask, _interior()))
        mirrored = None if mirror is None else mirror.result()
    # rounded far below any effect (1e-9 of a unit, 1e-6 mm) so that the last bits of a CPU's
    # BLAS (AVX2 or AVX-512 kernels) do not reach what is measured from it
    alignment = Alignment(
        tuple(tuple(round(float(v), 9) for v in row) for row in rotation),
        (
            round(float(translation[0]), 6),
            round(float(translation[1]), 6),
            round(float(translation[2]), 6),
        ),
        round(scale, 9),
        round(correlation, 6),
        None if mirrored is None else round(mirrored, 6),
        round(interior, 6),
    )
    return dataclasses.replace(alignment, problem=problem_of(alignment))


def _mirror_correlation(
    small: np.ndarray, flip: np.ndarray, fixed: Any, fixed_mask: Any, brain: np.ndarray
) -> float | None:
    """The correlation of the scan's left-right mirror once registered (None: it diverged)."""
    with one_itk_thread():
        _, mask, template_affine = template()
        mirror_image = sitk_image(small, flip)
        try:
            starts = [np.zeros(3), *head_starts(small, flip, brain, template_affine)]
            transform, _ = _register(mirror_image, fixed, fixed_mask, starts)
        except RuntimeError:
            return None
        (mirrored,) = _correlation(mirror_image, fixed, transform, (mask,))
        return mirrored


def problem_of(alignment: Alignment) -> str:
    """Why an alignment must not be used ("" when it is usable)."""
    low, high = SCALE_RANGE
    if not alignment.correlation >= MIN_CORRELATION:
        return (
            f"it does not align to a head (template correlation {alignment.correlation:.2f} < "
            f"{MIN_CORRELATION}: not a head, a partial field of view, or a failed registration)"
        )
    if not low <= alignment.scale <= high:
        return f"its alignment scales the head by {alignment.scale:.2f} (outside {low}–{high})"
    if alignment.rotation_deg > MAX_ROTATION_DEG:
        return f"its alignment rotates the head by {alignment.rotation_deg:.0f}° (over {MAX_ROTATION_DEG:.0f}°)"
    interior = alignment.interior_correlation
    if interior is not None and not interior >= MIN_INTERIOR_CORRELATION:
        return (
            f"it does not align to a head (no brain inside it: correlation {interior:.2f} < "
            f"{MIN_INTERIOR_CORRELATION} with the template's ventricles and white matter)"
        )
    if alignment.flipped:
        return (
            "its left-right mirror fits the template better (correlation "
            f"{alignment.mirrored_correlation:.2f} vs {alignment.correlation:.2f}): the header may "
            "be flipped left-right"
        )
    return ""
