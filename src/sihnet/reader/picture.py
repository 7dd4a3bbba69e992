"""The measurement screenshot: the patient's mid-sagittal plane through the landmarks, with the
landmarks and the three measured distances drawn and labelled in mm (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sihnet.atomic import write_atomic
from sihnet.bern_reading import BY_NAME
from sihnet.reader.profiles import Scan
from sihnet.schemas import Reading

HALF_WIDTH_MM = 40.0  # around the landmarks' centre, along the anterior and vertical axes
STEP_MM = 0.25


def _plane(reading: Reading) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (3,), anterior and superior unit vectors of the picture's plane (world mm), from the
    reading's landmarks and its alignment's rotation (template axes in the scan's world)."""
    rotation = np.asarray(reading.rotation, dtype=np.float64)
    centre = np.mean([np.asarray(p) for p in reading.landmarks.values()], axis=0)
    return centre, rotation @ np.array([0.0, 1.0, 0.0]), rotation @ np.array([0.0, 0.0, 1.0])


def _in_plane(
    point: tuple[float, float, float], centre: np.ndarray, axes: tuple[np.ndarray, np.ndarray]
) -> tuple[float, float]:
    offset = np.asarray(point) - centre
    return float(offset @ axes[0]), float(offset @ axes[1])


def write_picture(path: Path, scan: Scan, reading: Reading) -> None:
    """Draw the picture of a measured reading (module docstring) into ``path`` (written
    atomically)."""
    from matplotlib.figure import Figure

    centre, anterior, superior = _plane(reading)
    steps = np.arange(-HALF_WIDTH_MM, HALF_WIDTH_MM + STEP_MM / 2, STEP_MM)
    grid = centre + steps[None, :, None] * anterior + steps[::-1, None, None] * superior
    image = np.nan_to_num(scan.sample(grid))
    high = float(np.percentile(image, 99.5)) or 1.0
    figure = Figure(figsize=(6.0, 6.4))
    axis = figure.add_subplot()
    extent = (-HALF_WIDTH_MM, HALF_WIDTH_MM, -HALF_WIDTH_MM, HALF_WIDTH_MM)
    axis.imshow(image, cmap="gray", vmin=0, vmax=high, extent=extent)
    for name, point in reading.landmarks.items():
        x, y = _in_plane(point, centre, (anterior, superior))
        axis.plot(x, y, "o", color="#ff3333", markersize=3)
        axis.annotate(name.replace("_", " "), (x, y), xytext=(4, 3), textcoords="offset points",
                      color="#ff9999", fontsize=6)  # fmt: skip
    legend = []
    for name, distance in reading.distances.items():
        how = BY_NAME[name]  # the line's colour and shape: how the item is read
        colour = how.colour
        if distance.start is None or distance.end is None or distance.mm is None:
            continue
        (x0, y0), (x1, y1) = (
            _in_plane(p, centre, (anterior, superior)) for p in (distance.start, distance.end)
        )
        if how.end is not None:  # a distance between two levels: the levels and the span
            axis.plot([x0 - 3, x0 + 3], [y0, y0], "-", color=colour, linewidth=1)
            axis.plot([x1 - 3, x1 + 3], [y1, y1], "-", color=colour, linewidth=1)
            x0 = x1 = (x0 + x1) / 2
        axis.plot([x0, x1], [y0, y1], "-", color=colour, linewidth=1.5)
        axis.plot(
            [x0, x1],
            [y0, y1],
            "_" if how.direction == "vertical" else ".",
            color=colour,
            markersize=6,
        )
        legend.append(
            (colour, f"{name.replace('_mm', '').replace('_', ' ')}: {distance.mm:.1f} mm")
        )
    for row, (colour, text) in enumerate(legend):
        axis.text(-HALF_WIDTH_MM + 1.5, HALF_WIDTH_MM - 3.5 - 4.5 * row, text, color=colour,
                  fontsize=8, fontweight="bold")  # fmt: skip
    missing = [n for n, d in reading.distances.items() if d.mm is None]
    title = f"automatic Bern reading: score {reading.bern_score_min}"
    if reading.bern_score_max != reading.bern_score_min:
        title += f"–{reading.bern_score_max}"
    axis.set_title(title, fontsize=9)
    if missing:
        axis.set_xlabel("not measured: " + ", ".join(missing), fontsize=7)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.text(-HALF_WIDTH_MM + 1, -HALF_WIDTH_MM + 1, "anterior →", color="white", fontsize=6)
    figure.tight_layout()
    write_atomic(Path(path), lambda temp: figure.savefig(temp, format="png", dpi=110))
