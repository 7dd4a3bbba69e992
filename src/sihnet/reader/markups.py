"""The reader's landmarks and distances as a 3D Slicer markups file (``.mrk.json``, schema v1.0.3).

One point list (the landmarks carried into the scan and the ends of each measured distance) and
one line per distance, in the scan's world coordinates (LPS, as Slicer writes markups), so the
scan and the file open together in Slicer and every point can be checked or moved there.
"""

from __future__ import annotations

from typing import Any

from sihnet.schemas import Reading

SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
    "Schema/markups-schema-v1.0.3.json#"
)


def _lps(point: tuple[float, float, float]) -> list[float]:
    return [-float(point[0]), -float(point[1]), float(point[2])]


def _control_point(
    index: int, label: str, point: tuple[float, float, float], description: str
) -> dict[str, Any]:
    return {
        "id": str(index),
        "label": label,
        "description": description,
        "position": _lps(point),
        "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
        "selected": True,
        "locked": False,
        "visibility": True,
        "positionStatus": "defined",
    }


def _markup(kind: str, name: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": kind,
        "name": name,
        "coordinateSystem": "LPS",
        "coordinateUnits": "mm",
        "locked": False,
        "fixedNumberOfControlPoints": kind == "Line",
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(points),
        "controlPoints": points,
        "measurements": [],
    }


def markups_of(reading: Reading) -> dict[str, Any]:
    """The Slicer markups document of a reading (module docstring)."""
    landmarks = [
        _control_point(i + 1, name, point, "template landmark carried into the scan")
        for i, (name, point) in enumerate(reading.landmarks.items())
    ]
    markups = [_markup("Fiducial", "landmarks", landmarks)]
    for name, distance in reading.distances.items():
        if distance.start is None or distance.end is None or distance.mm is None:
            continue
        ends = [
            _control_point(1, f"{name} start", distance.start, f"{distance.mm:.2f} mm"),
            _control_point(2, f"{name} end", distance.end, f"{distance.mm:.2f} mm"),
        ]
        markups.append(_markup("Line", name, ends))
    return {"@schema": SCHEMA, "markups": markups}
