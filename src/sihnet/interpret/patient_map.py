"""``sihnet occlusion``: a patient's occlusion map from a run's fold models, written for viewers.

Outputs in ``DIR``: ``input.nii.gz`` (the preprocessed model input with its canvas affine),
``occlusion.nii.gz`` (float32, same grid), ``occlusion_native.nii.gz`` (the map resampled to the
patient's original image grid, to overlay on the series in 3D Slicer / ITK-SNAP / FSLeyes),
``occlusion.png`` (the paper's three panels through the sagittal slice of largest effect),
``regions.tsv`` (the largest effects, world coordinates in mm) and ``occlusion.json``. They are
written into a staging folder next to ``DIR`` and swapped in whole, so a killed run never leaves
one patient's map beside another's figure.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from sihnet import progress
from sihnet.atomic import write_atomic, write_json_atomic, write_nifti_atomic
from sihnet.config import InferenceConfig, OcclusionConfig
from sihnet.errors import SihnetError
from sihnet.hashing import tree_sha256
from sihnet.inference import Inference
from sihnet.inference.ensemble import FoldEnsemble
from sihnet.ingest.resolve import convert_dicom_inputs
from sihnet.interpret.occlusion import OcclusionResult, occlusion_map
from sihnet.outputs import check_output_folder
from sihnet.paths import OcclusionPaths, RunPaths
from sihnet.preprocessing.cache import VolumeCache, default_cache_dir, read_cached
from sihnet.preprocessing.volume import Preprocessed, resample_to_canvas
from sihnet.schemas import PredictionTable
from sihnet.tables import write_table

log = logging.getLogger(__name__)

REGION_COLUMNS = ("rank", "sign", "peak", "x_mm", "y_mm", "z_mm", "volume_ml", "location")


@dataclasses.dataclass(frozen=True)
class OcclusionRecord:
    """``occlusion.json``: how the map was made (the image only as a SHA-256) and its regions."""

    image_sha256: str
    grid: dict[str, Any]
    patch_voxels: list[int]
    stride_voxels: list[int]
    patch_mm: list[float]
    target: str
    value: str
    precision: str
    folds: list[dict[str, Any]]
    forwards: int
    seconds: float
    figure_sagittal_slice: int
    regions: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def scale_to_grid(voxels_1mm: tuple[int, int, int], spacing_mm: float) -> tuple[int, int, int]:
    """A patch or stride given in 1 mm voxels as voxels of a grid of ``spacing_mm`` (at least 1)."""
    a, b, c = (max(1, round(v / spacing_mm)) for v in voxels_1mm)
    return (a, b, c)


def save_nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    """Write a float32 NIfTI atomically, with a clean header (no description, no extensions)."""
    image = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    write_nifti_atomic(path, image)


_THIRDS = (
    ("left", "midline", "right"),
    ("posterior", "middle", "anterior"),
    ("inferior", "middle", "superior"),
)


def _location(point: np.ndarray, low: np.ndarray, high: np.ndarray) -> str:
    """Coarse position of a RAS-canvas voxel within the head's bounding box: thirds per axis (S-A-R)."""
    parts = []
    for axis in (2, 1, 0):
        fraction = (point[axis] - low[axis]) / max(high[axis] - low[axis], 1)
        parts.append(_THIRDS[axis][min(2, max(0, int(fraction * 3)))])
    return "-".join(parts)


def top_regions(
    effect: np.ndarray, image: np.ndarray, affine: np.ndarray, count: int = 5
) -> list[dict[str, Any]]:
    """The connected regions of largest effect (|value| >= half the largest), strongest first.

    Args:
        effect: (X, Y, Z) occlusion map on the canvas; image: (X, Y, Z) model input;
        affine: canvas voxel -> world (RAS mm).

    Returns:
        Rows with rank, sign, peak value, peak world coordinate (mm), volume (mL) and a coarse
        location within the head's bounding box (thirds; not an atlas label).
    """
    peak = float(np.abs(effect).max())
    if peak == 0:
        return []
    head = np.argwhere(image > 0.05 * float(image.max()))
    low, high = head.min(axis=0), head.max(axis=0)
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000
    rows: list[dict[str, Any]] = []
    for sign in (1, -1):
        labels, found = ndimage.label(sign * effect >= 0.5 * peak)
        for index in range(1, found + 1):
            mask = labels == index
            values = np.where(mask, sign * effect, -np.inf)
            voxel = np.array(np.unravel_index(np.argmax(values), effect.shape))
            world = affine[:3, :3] @ voxel + affine[:3, 3]
            rows.append(
                {
                    "sign": "raises fistula score" if sign > 0 else "lowers fistula score",
                    "peak": float(effect[tuple(voxel)]),
                    "x_mm": round(float(world[0]), 1),
                    "y_mm": round(float(world[1]), 1),
                    "z_mm": round(float(world[2]), 1),
                    "volume_ml": round(float(mask.sum()) * voxel_ml, 2),
                    "location": _location(voxel, low, high),
                }
            )
    rows.sort(key=lambda row: -abs(row["peak"]))
    return [{"rank": rank, **row} for rank, row in enumerate(rows[:count], start=1)]


def plot_panels(path: Path, image: np.ndarray, effect: np.ndarray, title: str) -> int:
    """The paper's Figure 3 panels: sagittal CE-T1, overlay, map, through the slice of largest |effect|.

    Args:
        image, effect: (X, Y, Z) arrays on the RAS canvas.

    Returns:
        The sagittal slice index (x) shown.
    """
    from matplotlib.figure import Figure

    x = int(np.unravel_index(np.argmax(np.abs(effect)), effect.shape)[0])
    # Sagittal slice (y: posterior->anterior, z: inferior->superior), shown anterior left, superior up.
    picture = np.flipud(image[x].T)[:, ::-1]
    values = np.flipud(effect[x].T)[:, ::-1]
    limit = float(np.abs(effect).max()) or 1.0
    figure = Figure(figsize=(10.5, 4), dpi=110)
    axes = figure.subplots(1, 3)
    shown = np.ma.masked_where(np.abs(values) < 0.2 * limit, values)
    panels = (("A  CE-T1", None), ("B  overlay", shown), ("C  occlusion map", values))
    colour = None
    for axis, (label, layer) in zip(axes, panels, strict=False):
        if label.startswith("C"):
            colour = axis.imshow(layer, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            axis.imshow(picture, cmap="gray")
            if layer is not None:
                axis.imshow(layer, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6)
        axis.set_title(label, loc="left", fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel("A  ←  →  P", fontsize=8)
    if colour is not None:
        figure.colorbar(colour, ax=axes[2], fraction=0.046, label="score drop when occluded")
    figure.suptitle(
        f"{title} (sagittal slice {x}; red: region supports the fistula score)", fontsize=9
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    write_atomic(path, lambda temp: temp.write_bytes(buffer.getvalue()), suffix=".png")
    return x


def view_of(prepared: Preprocessed, view: str) -> Preprocessed:
    """One view of a scan's input as a single canvas (``main``: the whole head)."""
    if view == "main":
        return Preprocessed(prepared.image, prepared.affine, alignment=prepared.alignment)
    image, affine = prepared.views[view]
    return Preprocessed(image, affine, alignment=prepared.alignment)


def _occluded_model(
    model: torch.nn.Module, prepared: Preprocessed, view: str, inference: Inference
) -> tuple[torch.nn.Module, torch.Tensor]:
    """What the occlusion engine sweeps: the network and its input, or for a network of several
    views the one view (its trunk, the other views' features fixed) and that view's canvas."""
    from sihnet.models.multiview import MultiViewDenseNet, ViewModel

    if not isinstance(model, MultiViewDenseNet):
        return model, torch.from_numpy(prepared.image)
    inputs = [torch.from_numpy(v)[None].to(inference.device) for v in prepared.model_input()]
    with inference.autocast():
        occluded = ViewModel(model.eval(), view, inputs)
    return occluded, torch.from_numpy(view_of(prepared, view).image)


def _sweep(
    ensemble: FoldEnsemble,
    prepared: Preprocessed,
    patch: tuple[int, int, int],
    stride: tuple[int, int, int],
    occlusion: OcclusionConfig,
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, list[int]]]:
    """Each fold model's map (averaged), what each sweep took, and the patch and stride used."""
    maps, per_fold = [], []
    job = progress.active()
    for index, (k, model) in enumerate(ensemble.models.items()):
        shown = [0]  # tenths of the sweep already logged

        def report(
            done: int, total: int, k: int = k, shown: list[int] = shown, index: int = index
        ) -> None:
            if job is not None:
                job.update("occlusion", index * total + done, len(ensemble.models) * total)
            if done * 10 >= (shown[0] + 1) * total:
                shown[0] = done * 10 // total
                log.info("fold %d: %d/%d occluded copies", k, done, total)

        swept, image = _occluded_model(model, prepared, occlusion.view, ensemble.inferences[k])
        result: OcclusionResult = occlusion_map(
            swept, image, patch, stride, occlusion.target, occlusion.batch_size,
            inference=ensemble.inferences[k], progress=report,
        )  # fmt: skip
        maps.append(result.map)
        per_fold.append(
            {
                "fold": k,
                "base_score": result.base_score,
                "windows": result.windows,
                "forwards": result.forwards,
                "seconds": round(result.seconds, 2),
            }
        )
        log.info(
            "fold %d: %d windows, %d forwards, %.1f s",
            k,
            result.windows,
            result.forwards,
            result.seconds,
        )
    used = {"patch": list(result.patch), "stride": list(result.stride)}
    return np.mean(maps, axis=0).astype(np.float32), per_fold, used


def _prepare_out(out: Path) -> Path:
    """A fresh staging folder beside ``out``; ``out`` must be an occlusion folder, empty, or new."""
    if out.exists() and not out.is_dir():
        raise SihnetError(f"--out {out.name} is a file; give a folder")
    if out.is_dir():
        own = {p.name for p in OcclusionPaths(out).outputs()}
        foreign = [p.name for p in out.iterdir() if p.name not in own]
        if foreign:
            raise SihnetError(
                f"--out {out.name} holds other files ({foreign[0]}); give a new or empty folder"
            )
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out``'s outputs by the staging folder's in one rename (the old set removed)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.is_dir():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_outputs(
    folder: Path,
    prepared: Preprocessed,
    effect: np.ndarray,
    native: tuple[np.ndarray, tuple[int, int, int]],
    target: str,
) -> tuple[list[dict[str, Any]], int]:
    paths = OcclusionPaths(folder)
    save_nifti(paths.model_input, prepared.image[0], prepared.affine)
    save_nifti(paths.occlusion_map, effect, prepared.affine)
    native_affine, native_shape = native
    resampled = resample_to_canvas(effect, prepared.affine, native_affine, native_shape)
    save_nifti(paths.native_map, resampled, native_affine)
    regions = top_regions(effect, prepared.image[0], prepared.affine)
    shown = [{**row, "peak": f"{row['peak']:.6g}"} for row in regions]
    write_table(paths.regions, REGION_COLUMNS, shown, delimiter="\t")
    title = f"occlusion map, {target} of fistula class"
    return regions, plot_panels(paths.figure, prepared.image[0], effect, title)


def check_occlusion_batch(ensemble: FoldEnsemble, batch: int) -> None:
    """Refuse, before allocating, an occlusion batch whose forward pass cannot fit on the device
    (an upper bound: the activations a training forward pass of that batch would keep)."""
    from sihnet.models.densenet import build_model
    from sihnet.models.memory import check_fits, saved_activation_bytes

    size = ensemble.config.preprocessing.size  # a view's copies are never larger than these
    per_copy, _ = saved_activation_bytes(build_model, (1, 1, *size), torch.float32)
    check_fits(batch * per_copy, ensemble.inference.device, f"an occlusion batch of {batch}")


def run_occlusion(
    run: Path,
    image_path: Path,
    out: Path,
    occlusion: OcclusionConfig = OcclusionConfig(),
    settings: InferenceConfig = InferenceConfig(),
    cache: VolumeCache | None = None,
    require_all: bool = False,
) -> OcclusionRecord:
    """Occlusion map of one image with the run's fold models (averaged when several); see module doc.

    The model input comes from the preprocessed-volume cache (default: the user cache dir), so an
    image the run was trained or evaluated on is not read and resampled again.
    """
    check_output_folder(Path(out), "occlusion", inside=Path(run))
    ensemble = FoldEnsemble.load(run, occlusion.fold, settings, require_all)
    if occlusion.batch_size is not None:
        check_occlusion_batch(ensemble, occlusion.batch_size)
    prep = ensemble.config.preprocessing
    spacings = {"main": prep.spacing_mm, **{v.name: v.spacing_mm for v in prep.views}}
    if occlusion.view not in spacings:
        raise SihnetError(f"--view must be one of {', '.join(spacings)}, not {occlusion.view!r}")
    spacing = spacings[occlusion.view]
    patch = scale_to_grid(occlusion.patch_1mm, spacing)
    stride = scale_to_grid(occlusion.stride_1mm or occlusion.patch_1mm, spacing)
    cache = cache or VolumeCache(default_cache_dir())
    convert_dicom_inputs([image_path], cache)
    whole = read_cached(cache.get(image_path, prep))
    prepared = view_of(whole, occlusion.view)
    native = _native_grid(cache.nifti_of(image_path))
    staging = _prepare_out(Path(out))
    try:
        effect, per_fold, used = _sweep(ensemble, whole, patch, stride, occlusion)
        regions, slice_x = _write_outputs(staging, prepared, effect, native, occlusion.target)
        record = OcclusionRecord(
            image_sha256=tree_sha256(image_path),
            grid={"shape": list(effect.shape), "spacing_mm": spacing},
            patch_voxels=used["patch"],
            stride_voxels=used["stride"],
            patch_mm=[p * spacing for p in used["patch"]],
            target=occlusion.target,
            value="target score of the input minus target score with the patch set to 0, averaged over covering windows and folds",
            precision=ensemble.precision,
            folds=per_fold,
            forwards=sum(f["forwards"] for f in per_fold),
            seconds=round(sum(f["seconds"] for f in per_fold), 2),
            figure_sagittal_slice=slice_x,
            regions=regions,
        )
        write_json_atomic(OcclusionPaths(staging).record, record.as_json())
        _swap_in(staging, Path(out))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def demo_patient(paths: RunPaths, cohort: Any) -> tuple[str, Path, int]:
    """The fistula patient the ensemble ranks highest out of fold: (patient ID, image, held-out fold).

    ``cohort`` is the run's :class:`~sihnet.data.manifest.Cohort`; the map uses the fold model that
    never saw the patient.
    """
    if not paths.oof_predictions.is_file():
        raise SihnetError(f"{paths.root.name}: no out-of-fold predictions (run 'sihnet evaluate')")
    table = PredictionTable.read(paths.oof_predictions)
    if not (table.labels == 1).any():
        raise SihnetError("no fistula patient in the out-of-fold predictions")
    best = int(np.argmax(np.where(table.labels == 1, table.probability, -np.inf)))
    patient = table.patient_ids[best]
    scan = next(scan for scan in cohort.scans if scan.patient_id == patient)
    return patient, scan.image, int(table.folds[best])


def _native_grid(nifti: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and 3D shape of the patient's image, from its header only (no voxels read)."""
    header: Any = nib.load(str(nifti))
    i, j, k = (int(n) for n in header.shape[:3])
    return np.asarray(header.affine, dtype=np.float64), (i, j, k)
