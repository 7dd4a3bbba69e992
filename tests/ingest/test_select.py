"""Series assessment and choice from headers alone (no files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from sihnet.ingest.discover import Series
from sihnet.ingest.select import assess, choose, orientation_of

SAGITTAL = np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def series(
    description: str,
    cosines: np.ndarray = SAGITTAL,
    number: int = 1,
    slices: int = 100,
    **fields: object,
) -> Series:
    header = Dataset()
    header.Modality = "MR"
    header.SeriesDescription = description
    header.SeriesNumber = number
    header.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    header.MRAcquisitionType = "3D"
    for key, value in fields.items():
        setattr(header, key, value)
    positions = np.zeros((slices, 3))
    return Series(
        "1.2.3",
        f"1.2.3.{number}",
        [Path(f"f{i}") for i in range(slices)],
        header,
        positions,
        cosines,
    )


@pytest.mark.parametrize(
    ("description", "contrast"),
    [
        ("t1_mprage_sag nach KM", "post"),
        ("T1 SE sag +C", "post"),
        ("Sag T1 FLAIR Gd", "post"),
        ("T1 3D mit KM", "post"),
        ("t1_se_tra ohne KM", "pre"),
        ("T1 sag nativ", "pre"),
        ("T1 SAG PRE", "pre"),
        ("T1 MPRAGE", "unknown"),
    ],
)
def test_contrast_from_descriptions(description: str, contrast: str) -> None:
    result = assess(series(description))
    assert result.contrast == contrast and result.weighting == "T1" and result.usable


def test_contrast_agent_tag_and_weighting_from_timing() -> None:
    result = assess(
        series("SAG 3D", ContrastBolusAgent="Gadovist", RepetitionTime=8.0, EchoTime=3.0)
    )
    assert (result.contrast, result.weighting) == ("post", "T1")
    assert assess(series("AX 3D", RepetitionTime=5000.0, EchoTime=90.0)).weighting == "other"
    assert assess(series("t2_spc_sag")).weighting == "other"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"Modality": "CT"}, "modality CT (not MR)"),
        ({"ImageType": ["DERIVED", "SECONDARY", "MPR"]}, "derived image (ImageType DERIVED/MPR)"),
        ({"BurnedInAnnotation": "YES"}, "burned-in annotation"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "secondary capture"),
        ({"SeriesDescription": "3-plane localizer"}, "localizer"),
    ],
)
def test_unusable_series_say_why(fields: dict[str, object], reason: str) -> None:
    item = series("T1 post")
    for key, value in fields.items():
        setattr(item.header, key, value)
    result = assess(item)
    assert not result.usable and result.reason == reason


def test_orientation_from_cosines() -> None:
    assert orientation_of(SAGITTAL) == "sagittal" and orientation_of(AXIAL) == "axial"
    oblique = np.array([0.0, 0.96, -0.28, 0.0, 0.28, 0.96])  # sagittal tilted 16 degrees
    assert orientation_of(oblique) == "sagittal" and orientation_of(None) == "unknown"


def test_choice_prefers_sagittal_3d_then_falls_back_and_override_wins() -> None:
    study = [
        series("T1 ax pre", AXIAL, 2),
        series("T1 ax post", AXIAL, 3),
        series("T1 sag post 2D", number=4, MRAcquisitionType="2D", slices=30),
        series("T1 mprage sag post", number=5),
    ]
    assert choose(study).chosen == 3
    fallback = choose(study[:2])
    assert fallback.chosen == 1 and "fell back to axial" in fallback.warning
    assert choose(study, override=2).chosen == 0
    missing = choose(study, override=99)
    assert missing.chosen is None and "override series 99 not found" in missing.warning
    none = choose(study[:1])
    assert none.chosen is None and none.warning == "no post-contrast T1 series"


def test_acquisition_order_marks_later_unknown_series_post() -> None:
    study = [
        series("T1 sag post", number=2, MRAcquisitionType="2D"),
        series("T1 MPRAGE sag", number=3),
    ]
    choice = choose(study)
    assert choice.chosen == 1
    assert "acquired after a post-contrast series" in choice.decisions[1][0].evidence


def test_enhanced_mr_contrast_usage_in_the_functional_groups() -> None:
    usage, group = Dataset(), Dataset()
    usage.ContrastBolusAgentAdministered = "YES"
    group.ContrastBolusUsageSequence = [usage]
    item = series("SAG 3D", RepetitionTime=8.0, EchoTime=3.0)
    item.header.SharedFunctionalGroupsSequence = [group]
    assert assess(item).contrast == "post"
    usage.ContrastBolusAgentAdministered = "NO"
    assert assess(item).contrast == "unknown"


def test_single_valued_image_type_and_unparseable_headers() -> None:
    item = series("T1 post")
    item.header.ImageType = "DERIVED"  # VM 1: a plain string, not a list
    assert assess(item).reason == "derived image (ImageType DERIVED)"

    class Broken(Dataset):
        def get(self, *args: object, **kwargs: object) -> object:
            raise ValueError("bad value")

    item = series("T1 post")
    item.header = Broken()
    result = assess(item)
    assert not result.usable and result.reason == "unreadable header fields (ValueError)"
