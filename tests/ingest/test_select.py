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
        series(
            "SAG 3D",
            ContrastBolusAgent="Gadovist",
            ScanningSequence="GR",
            RepetitionTime=8.0,
            EchoTime=3.0,
        )
    )
    assert (result.contrast, result.weighting, result.contrast_evidence) == ("post", "T1", "header")
    t2 = assess(series("AX 3D", ScanningSequence="SE", RepetitionTime=5000.0, EchoTime=90.0))
    assert t2.weighting == "T2" and not t2.usable and t2.reason.startswith("T2, not a T1")
    assert assess(series("t2_spc_sag")).weighting == "T2"


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
    assert none.chosen is None
    assert none.warning == "no post-contrast T1 series (1 T1 without post-contrast evidence)"


def test_acquisition_order_marks_later_unknown_series_post_but_ranks_below_evidence() -> None:
    study = [
        series("T1 sag post", number=2, MRAcquisitionType="2D"),
        series("T1 MPRAGE sag", number=3),
    ]
    choice = choose(study)
    assert choice.chosen == 0 and choice.warning == ""  # its own description says post
    later = choice.decisions[1]
    assert later[1] == "not selected (lower rank)"
    assert later[0].contrast_evidence == "acquisition order"
    assert "acquired after a post-contrast series" in later[0].evidence


def test_a_marked_t1_beats_a_later_identical_unmarked_one() -> None:
    study = [
        series("t1_mprage_sag", number=2, ContrastBolusAgent="Dotarem"),
        series("t1_mprage_sag", number=3),
    ]
    choice = choose(study)
    assert choice.chosen == 0 and choice.decisions[0] == (choice.decisions[0][0], "selected")
    assert choice.decisions[0][0].contrast_evidence == "header"
    assert choice.alternatives == (1,)


def test_a_pick_by_acquisition_order_alone_is_uncertain() -> None:
    study = [
        series("T1 ax post", AXIAL, 2, slices=12),  # marked, but too few slices to be the input
        series("t1_mprage_sag", number=3),
    ]
    choice = choose(study)
    assert choice.chosen == 1 and choice.decisions[1][1] == "selected (uncertain)"
    assert "only by acquisition order" in choice.warning


def test_ties_go_to_the_earlier_series() -> None:
    study = [series("T1 sag post", number=2), series("T1 sag post", number=3)]
    assert choose(study).chosen == 0


@pytest.mark.parametrize(
    ("name", "fields", "kind"),
    [
        (
            "gre_field_mapping",
            {"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"], "ScanningSequence": "GR",
             "RepetitionTime": 500.0, "EchoTime": 7.38, "SequenceName": "*fm2d2r"},
            "field map",
        ),
        (
            "SERIES 9",  # no words: the coded values must decide
            {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"], "ScanningSequence": "EP",
             "RepetitionTime": 2000.0, "EchoTime": 30.0},
            "EPI (mosaic)",
        ),
        (
            "SERIES 9",
            {"ScanningSequence": "EP", "DiffusionBValue": 1000.0, "RepetitionTime": 5000.0,
             "EchoTime": 80.0},
            "DWI",
        ),
    ],
)  # fmt: skip
def test_nothing_but_a_non_t1_after_a_marked_series_is_not_converted(
    name: str, fields: dict[str, object], kind: str
) -> None:
    study = [
        series("t2_flair_tra", AXIAL, 2, ContrastBolusAgent="Gadovist"),
        series(name, AXIAL, 3, **fields),
    ]
    choice = choose(study)
    assert choice.chosen is None and choice.warning.startswith("no post-contrast T1 series")
    assessment, decision = choice.decisions[1]
    assert decision == "not T1" and assessment.weighting == kind and not assessment.usable
    assert kind in choice.warning


def test_enhanced_mr_contrast_usage_in_the_functional_groups() -> None:
    usage, group = Dataset(), Dataset()
    usage.ContrastBolusAgentAdministered = "YES"
    group.ContrastBolusUsageSequence = [usage]
    item = series("SAG 3D", ScanningSequence="GR", RepetitionTime=8.0, EchoTime=3.0)
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


def test_a_missing_slice_is_named_not_left_to_dcm2niix() -> None:
    item = series("T1 sag post", slices=30)
    positions = np.zeros((30, 3))
    positions[:, 0] = np.arange(30) * 1.0  # sagittal: slices along x (LPS)
    item.positions = np.delete(positions, 12, axis=0)
    item.files = item.files[:29]
    result = assess(item)
    assert not result.usable
    assert result.reason == "a slice is missing (a gap of 2.0 mm where slices are 1.0 mm apart)"
    item.positions = positions
    item.files = [Path(f"f{i}") for i in range(30)]
    assert assess(item).usable
