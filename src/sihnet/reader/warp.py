"""The MNI152 alignment refined by a deformable registration around the midline (SimpleITK B-spline).

The similarity alignment (:mod:`sihnet.preprocessing.registration`) places the sella, cisterns and
brainstem within 2-8 mm of where they are in a head (synthetic heads: 3.8 mm mean over four
landmarks); a cubic B-spline transform over the box that holds them, registered by Mattes mutual
information inside the template's brain (the template has no skull, dura, pituitary or vessels),
brings them to 1-2 mm (``benchmarks/reader_registration.py``). The measurements then refine each
landmark on the patient's own edges (:mod:`sihnet.reader.distances`).

SimpleITK's B-spline over its demons (FastSymmetricForces, same box and time: 2.3 mm mean error,
they need the two images' intensities to match and the template lacks half of the CE-T1's
structures) and over ANTsPy's SyN and itk-elastix (two more large dependencies for a 4x4x4-knot
problem): measured in ``benchmarks/reader_registration.py``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from sihnet.errors import SihnetError
from sihnet.preprocessing.registration import (
    CLIP_PERCENTILE,
    SAMPLING_SEED,
    Alignment,
    one_itk_thread,
)
from sihnet.template import mni152_t1, sitk_image

# The box (template mm) the refinement covers: sella, basal cisterns, brainstem, diencephalon.
BOX_LOW = np.array([-36.0, -60.0, -64.0])
BOX_HIGH = np.array([36.0, 32.0, 12.0])
GRID_MM = 2.0
MESH = 2  # B-spline cells per axis over the box (36-46 mm between knots)
ITERATIONS = 30
SAMPLING = 0.3
SHRINK = (2, 1)
MIN_JACOBIAN = 0.2  # a warp that compresses a region more than 5-fold has folded or diverged
LPS = np.diag([-1.0, -1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class Warp:
    """Template mm -> the scan's world mm: the similarity alignment after a B-spline refinement.

    Attributes:
        alignment: the similarity alignment it refines.
        fixed_parameters, parameters: the B-spline transform's (SimpleITK, LPS, on the box).
        information_before, information_after: Mattes mutual information of template and scan
            inside the box's brain (negated, as ITK: lower fits better), under the similarity alone
            and with the refinement.
        min_jacobian: the smallest Jacobian determinant of the refinement over the box.
    """

    alignment: Alignment
    fixed_parameters: tuple[float, ...]
    parameters: tuple[float, ...]
    information_before: float
    information_after: float
    min_jacobian: float

    @property
    def problem(self) -> str:
        """Why the refinement must not be used ("" when it is usable)."""
        if self.min_jacobian < MIN_JACOBIAN:
            return f"the deformable registration folded (Jacobian {self.min_jacobian:.2f})"
        if self.information_after > self.information_before:
            return (
                "the deformable registration made the fit worse (mutual information "
                f"{-self.information_before:.3f} -> {-self.information_after:.3f})"
            )
        return ""

    def to_world(self, mni: np.ndarray) -> np.ndarray:
        """Template points (N, 3) mm -> the scan's world mm (N, 3)."""
        refined = _bspline(self.fixed_parameters, self.parameters)
        points = np.atleast_2d(np.asarray(mni, dtype=np.float64))
        moved = np.array([refined.TransformPoint((LPS @ p).tolist()) for p in points]) @ LPS
        return self.alignment.to_world(moved)

    def as_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["alignment"] = self.alignment.as_json()
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Warp:
        return cls(
            Alignment.from_json(values["alignment"]),
            tuple(float(v) for v in values["fixed_parameters"]),
            tuple(float(v) for v in values["parameters"]),
            float(values["information_before"]),
            float(values["information_after"]),
            float(values["min_jacobian"]),
        )


def _bspline(fixed_parameters: tuple[float, ...], parameters: tuple[float, ...]) -> Any:
    import SimpleITK as sitk

    transform = sitk.BSplineTransform(3, 3)
    transform.SetFixedParameters(list(fixed_parameters))
    transform.SetParameters(list(parameters))
    return transform


@functools.lru_cache(maxsize=1)
def _box_template() -> tuple[Any, Any, np.ndarray]:
    """The 1 mm MNI152 T1 resampled on the box's grid, its brain mask (2 voxels beyond the
    brain), as SimpleITK images in template space, and the mask as an array (Z, Y, X)."""
    import SimpleITK as sitk
    from scipy import ndimage

    stored, affine = mni152_t1()
    data = stored / float(np.percentile(stored[stored > 0], 99))
    data[data < 0.02] = 0.0  # the template's background holds 1e-45..1e-17
    full = sitk_image(data, affine)
    reference = _box_reference()
    box = sitk.Resample(full, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    mask_array = ndimage.binary_dilation(sitk.GetArrayFromImage(box) > 0.05, iterations=2)
    mask = sitk.GetImageFromArray(mask_array.astype(np.uint8))
    mask.CopyInformation(box)
    return box, mask, mask_array


def _box_reference() -> Any:
    """An empty SimpleITK image on the box's grid (LPS, identity direction)."""
    import SimpleITK as sitk

    size = [int(v) for v in np.round((BOX_HIGH - BOX_LOW) / GRID_MM).astype(int) + 1]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing([GRID_MM] * 3)
    reference.SetOrigin([-float(BOX_HIGH[0]), -float(BOX_HIGH[1]), float(BOX_LOW[2])])
    return reference


def _similarity(alignment: Alignment) -> Any:
    """The alignment as a SimpleITK transform (template LPS -> scan LPS)."""
    import SimpleITK as sitk

    transform = sitk.AffineTransform(3)
    matrix = LPS @ (alignment.scale * alignment.rotation_matrix) @ LPS
    transform.SetMatrix(matrix.ravel().tolist())
    transform.SetTranslation((LPS @ np.asarray(alignment.translation)).tolist())
    return transform


def _mutual_information(fixed: Any, moving: Any, mask: Any, transform: Any) -> float:
    """Mattes mutual information (ITK's sign: lower fits better) over every voxel of the mask."""
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricFixedMask(mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform)
    method.SetNumberOfThreads(1)
    return float(method.MetricEvaluate(fixed, moving))


def refine_alignment(
    volume: np.ndarray, affine: np.ndarray, alignment: Alignment, mesh: int = MESH
) -> Warp:
    """Refine a scan's similarity alignment on the midline box (module docstring).

    Args:
        volume: (I, J, K) the scan's intensities.
        affine: its voxel -> world (RAS mm) matrix.
        alignment: its similarity alignment to the template.
        mesh: B-spline cells per axis over the box.

    Raises:
        SihnetError: the registration diverged.
    """
    with one_itk_thread():  # deterministic: the same scan, the same warp
        return _refine(volume, affine, alignment, mesh)


def _refine(volume: np.ndarray, affine: np.ndarray, alignment: Alignment, mesh: int) -> Warp:
    import SimpleITK as sitk

    box, mask, mask_array = _box_template()
    scan = np.clip(np.nan_to_num(volume.astype(np.float32)), 0, None)
    head = scan[scan > scan.mean()]
    upper = float(np.percentile(head, CLIP_PERCENTILE)) if head.size else 1.0
    moving = sitk_image(np.minimum(scan / max(upper, 1e-12), 1.0), affine)
    resampled = sitk.Resample(moving, box, _similarity(alignment), sitk.sitkLinear, 0.0)
    refinement = sitk.BSplineTransformInitializer(box, [mesh] * 3, order=3)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricFixedMask(mask)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING, seed=SAMPLING_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=ITERATIONS,
        maximumNumberOfCorrections=5,
    )
    method.SetShrinkFactorsPerLevel(list(SHRINK))
    method.SetSmoothingSigmasPerLevel([f / 2 for f in SHRINK])
    method.SetInitialTransform(refinement, inPlace=True)
    method.SetNumberOfThreads(1)
    try:
        method.Execute(box, resampled)
    except RuntimeError:
        raise SihnetError("the deformable registration diverged") from None
    field = sitk.TransformToDisplacementField(
        refinement, sitk.sitkVectorFloat64, box.GetSize(), box.GetOrigin(), box.GetSpacing()
    )
    jacobian = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))
    return Warp(
        alignment,
        tuple(float(v) for v in refinement.GetFixedParameters()),
        tuple(float(v) for v in refinement.GetParameters()),
        _mutual_information(
            box, resampled, mask, sitk.BSplineTransformInitializer(box, [MESH] * 3, order=3)
        ),
        _mutual_information(box, resampled, mask, refinement),
        float(jacobian[mask_array].min()),
    )
