"""Weighting and contrast from a series' own header: coded values, sequence names, words, timing."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import pydicom
import pytest
from pydicom.dataset import Dataset

from sihnet.ingest.classify import contrast_of, weighting_of


def header(description: str = "", **fields: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    ds.SeriesDescription = description
    for key, value in fields.items():
        setattr(ds, key, value)
    return ds


def enhanced(**groups: dict[str, object]) -> Dataset:
    """An enhanced-MR header whose shared functional groups hold one item per named sequence."""
    ds = header("")
    shared = Dataset()
    for sequence, values in groups.items():
        item = Dataset()
        for key, value in values.items():
            setattr(item, key, value)
        setattr(shared, sequence, [item])
    ds.SharedFunctionalGroupsSequence = [shared]
    return ds


@pytest.mark.parametrize(
    ("description", "weighting"),
    [
        ("REST1", "BOLD"),  # resting-state fMRI run 1: "T1" inside a word
        ("rest1_bold", "BOLD"),
        ("T1rho_sag", "quantitative map"),
        ("t1_map_B1corr", "quantitative map"),
        ("FLAIR T1 sag", "T1"),  # GE's T1-FLAIR is a T1
        ("Sag T1 FLAIR Gd", "T1"),
        ("t2_flair_tra", "FLAIR"),
        ("T2 FLAIR", "FLAIR"),
        ("sT1W_3D_TFE", "T1"),  # Philips' SENSE prefix
        ("3DT1 post", "T1"),
        ("AX T1 SE", "T1"),
        ("t1_mprage_sag", "T1"),
        ("BRAVO", "T1"),
        ("t2_tse_sag", "T2"),
        ("gre_field_mapping", "field map"),
        ("ep2d_diff_tra", "DWI"),
        ("SWI_Images", "SWI"),
        ("TOF_3D_multi-slab", "TOF/MRA"),
        ("pcasl_perfusion", "ASL/perfusion"),
        ("PD_TSE", "PD"),
    ],
)
def test_description_words_on_letter_boundaries(description: str, weighting: str) -> None:
    assert weighting_of(header(description)).value == weighting


@pytest.mark.parametrize(
    ("fields", "weighting", "evidence"),
    [
        (  # Siemens phase-difference field map: TR/TE alone would say T1
            {"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"], "ScanningSequence": "GR",
             "RepetitionTime": 500.0, "EchoTime": 7.38, "SequenceName": "*fm2d2r"},
            "field map", "fm2",
        ),
        (
            {"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"], "ScanningSequence": "GR",
             "RepetitionTime": 500.0, "EchoTime": 7.38},
            "phase", "ImageType P",
        ),
        (
            {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"], "ScanningSequence": "EP",
             "RepetitionTime": 2000.0, "EchoTime": 30.0},
            "EPI (mosaic)", "MOSAIC",
        ),
        ({"ScanningSequence": "EP", "RepetitionTime": 600.0, "EchoTime": 20.0}, "EPI", "EP"),
        ({"DiffusionBValue": 1000.0, "ScanningSequence": "SE"}, "DWI", "b-value"),
        ({"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]}, "DWI", "DIFFUSION"),
        (
            {"ScanningSequence": "GR", "SequenceVariant": ["SP"], "RepetitionTime": 8.0,
             "EchoTime": 3.0},
            "T1", "TR 8 ms",
        ),
        (
            {"ScanningSequence": ["GR", "IR"], "SequenceVariant": ["SP", "MP"],
             "RepetitionTime": 2300.0, "EchoTime": 2.3, "InversionTime": 900.0},
            "T1", "MPRAGE-like",
        ),
        (
            {"ScanningSequence": ["SE", "IR"], "RepetitionTime": 9000.0, "EchoTime": 90.0,
             "InversionTime": 2500.0},
            "FLAIR", "TI 2500",
        ),
        ({"ScanningSequence": "SE", "RepetitionTime": 5000.0, "EchoTime": 100.0}, "T2", "TE 100"),
        ({"RepetitionTime": 500.0, "EchoTime": 7.0}, "unknown", "without ScanningSequence"),
        ({"SequenceName": "*tfl3d1_16ns"}, "T1", "tfl"),
        ({"SequenceName": "*fl3d1r_t70"}, "TOF/MRA", "fl3d1r_t7"),
        ({"SequenceName": "*swi3d1r"}, "SWI", "swi"),
        ({"SequenceName": "epfid2d1_64"}, "EPI", "ep"),
    ],
)  # fmt: skip
def test_coded_values_sequence_names_and_timing(
    fields: dict[str, object], weighting: str, evidence: str
) -> None:
    call = weighting_of(header("SERIES 7", **fields))
    assert call.value == weighting and evidence in call.evidence


def test_two_echoes_in_a_series_are_not_a_t1() -> None:
    # A field map's magnitude pair: TR/TE look like a T1, but one series holds two echoes.
    fields = {"ScanningSequence": "GR", "RepetitionTime": 500.0, "EchoTime": 4.92}
    assert weighting_of(header("", **fields), echoes=1).value == "T1"
    assert weighting_of(header("", **fields), echoes=2).value == "multi-echo"


def test_enhanced_functional_groups_give_the_timing() -> None:
    t1 = enhanced(
        MRTimingAndRelatedParametersSequence={"RepetitionTime": 600.0},
        MREchoSequence={"EffectiveEchoTime": 10.0},
    )
    t1.EchoPulseSequence = "SPIN"
    assert weighting_of(t1).value == "T1" and "EchoPulseSequence SPIN" in weighting_of(t1).evidence
    t2 = enhanced(
        MRTimingAndRelatedParametersSequence={"RepetitionTime": 5000.0},
        MREchoSequence={"EffectiveEchoTime": 100.0},
    )
    t2.EchoPulseSequence = "SPIN"
    assert weighting_of(t2).value == "T2"
    phase = enhanced(MRImageFrameTypeSequence={"ComplexImageComponent": "PHASE"})
    assert weighting_of(phase).value == "phase"
    flair = enhanced(MRImageFrameTypeSequence={"AcquisitionContrast": "FLUID_ATTENUATED"})
    assert weighting_of(flair).value == "FLAIR"


def test_philips_enhanced_mprage_is_a_t1_from_its_coded_contrast() -> None:
    data = Path(nib.__file__).parent / "nicom" / "tests" / "data" / "philips_mprage.dcm.gz"
    ds = pydicom.dcmread(io.BytesIO(gzip.decompress(data.read_bytes())), stop_before_pixels=True)
    ds.SeriesDescription = ds.ProtocolName = ""  # no words: the coded values must decide
    call = weighting_of(ds)
    assert (call.value, call.kind, call.evidence) == ("T1", "coded", "AcquisitionContrast T1")


@pytest.mark.parametrize(
    ("description", "fields", "contrast", "kind"),
    [
        ("t1_mprage_sag_post", {}, "post", "description"),
        ("T1 POSTERIOR FOSSA", {}, "unknown", ""),  # "post" inside a word
        ("T1+C", {}, "post", "description"),
        ("AX T1 C+", {}, "post", "description"),
        ("t1postGd", {}, "post", "description"),
        ("T1 nativ", {"ContrastBolusAgent": "Gadovist"}, "pre", "description"),
        ("t1_se ohne KM", {}, "pre", "description"),
        ("T1 W/O", {}, "pre", "description"),
        ("SAG 3D", {"ContrastBolusAgent": "Gadovist"}, "post", "header"),
        ("SAG 3D", {"ContrastBolusAgent": "NONE"}, "unknown", ""),
    ],
)
def test_contrast_words_and_header(
    description: str, fields: dict[str, object], contrast: str, kind: str
) -> None:
    call = contrast_of(header(description, **fields))
    assert (call.value, call.kind) == (contrast, kind)


def test_enhanced_contrast_usage_sequence() -> None:
    given = enhanced(ContrastBolusUsageSequence={"ContrastBolusAgentAdministered": "YES"})
    assert contrast_of(given).value == "post" and contrast_of(given).kind == "header"
    refused = enhanced(ContrastBolusUsageSequence={"ContrastBolusAgentAdministered": "NO"})
    assert contrast_of(refused).value == "unknown"
