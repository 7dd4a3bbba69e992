"""What a series is, from its own header: weighting (T1 or which other kind) and contrast evidence.

Coded values are read first (ImageType / enhanced FrameType, AcquisitionContrast,
ComplexImageComponent, ScanningSequence / EchoPlanarPulseSequence, diffusion b-value, the vendor's
sequence name), then description keywords matched on letter boundaries (``REST1`` is a resting-state
run, not a T1; ``T1rho`` is not a T1-weighted image), then timing (TR/TE/TI) but only together with
the sequence type (spin or gradient echo, not EPI) — TR/TE alone also fit a field map. Enhanced
multi-frame series carry their timing in the functional groups, read here too.

Evidence texts quote only DICOM keywords, coded values and the matched keyword, never free text,
so they can go into ``selection.tsv``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from pydicom.dataset import Dataset

# Letter boundaries: digits and punctuation separate words ("t1post", "sag_t1"), letters do not.
_B, _E = r"(?<![a-z])", r"(?![a-z])"
_PLANE_PREFIX = r"(?:3d|2d|s|ax|sag|cor|tra)?"

T1_WORD = re.compile(
    rf"{_B}{_PLANE_PREFIX}t1(?!\d|rho|ρ|[ _-]?map)"
    rf"|{_B}(?:mp-?rage|mprage|spgr|fspgr|bravo|vibe|tfl|fl3d|t1tfe|t1ffe|flash|tfe){_E}"
)
# Other contrasts named in descriptions: (pattern, kind). Checked after an explicit T1 word, except
# the quantitative maps and T1rho, which contain "t1" but are not T1-weighted images.
OTHER_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(rf"t1(?:rho|ρ)|t[12][ _-]?map|{_B}mp2rage{_E}"),
        "quantitative map",
    ),
    (re.compile(rf"{_B}(?:field[ _-]?map\w*|fieldmap|fmap|b0[ _-]?map|fm){_E}"), "field map"),
    (re.compile(rf"{_B}(?:dwi|dti|diff\w*|adc|trace\w*|tracew|hardi){_E}"), "DWI"),
    (re.compile(rf"{_B}(?:bold|fmri|rs[ _-]?fmri|rest|resting\w*|task){_E}"), "BOLD"),
    (re.compile(rf"{_B}(?:asl|pcasl|pasl|perf\w*|dsc|cbf){_E}"), "ASL/perfusion"),
    (re.compile(rf"{_B}(?:epi|ep2d|ep3d|epse|epfid){_E}"), "EPI"),
    (re.compile(rf"{_B}(?:swi|swan|susc\w*|venobold|t2\*|t2star){_E}"), "SWI"),
    (re.compile(rf"{_B}(?:tof|mra|angio\w*|pc[ _-]?mra){_E}"), "TOF/MRA"),
    (re.compile(rf"{_B}\w*flair\w*{_E}|{_B}dark[ _-]?fluid{_E}"), "FLAIR"),
    (re.compile(rf"{_B}stir{_E}"), "STIR"),
    (re.compile(rf"{_B}{_PLANE_PREFIX}t2(?!\d)"), "T2"),
    (re.compile(rf"{_B}(?:pd|pdw|pd[ _-]?w){_E}"), "PD"),
)
PRE_WORDS = re.compile(
    rf"{_B}(?:pre|prec|precontrast|pregd|nativ|native|non[ _-]?contrast|noncontrast|sans){_E}"
    rf"|ohne[ _-]?km|vor[ _-]?km|{_B}w/?o[ _-]?(?:gd|contrast|c){_E}|{_B}w/o{_E}"
)
POST_WORDS = re.compile(
    rf"{_B}(?:post|postgd|postc|postcontrast|postkm|gd|gad|gado|gadolinium|km|ce|contrast"
    rf"|kontrast|kontrastmittel|mdc){_E}|\+\s*(?:c|gd|km){_E}|{_B}c\+|nach[ _-]?km|mit[ _-]?km"
    rf"|{_B}w/?[ _-]?(?:gd|contrast){_E}|{_B}with[ _-]?(?:gd|contrast){_E}"
)

# Coded ImageType / FrameType values that rule out an anatomical T1 (upper case).
IMAGE_TYPE_KINDS = {
    "P": "phase",
    "PHASE": "phase",
    "PHASE MAP": "phase",
    "R": "real/imaginary",
    "I": "real/imaginary",
    "REAL": "real/imaginary",
    "IMAGINARY": "real/imaginary",
    "FIELD_MAP": "field map",
    "FIELDMAP": "field map",
    "B0": "field map",
    "B0 MAP": "field map",
    "DIFFUSION": "DWI",
    "ADC": "DWI",
    "EADC": "DWI",
    "TRACEW": "DWI",
    "TRACE": "DWI",
    "FA": "DWI",
    "MOSAIC": "EPI (mosaic)",
    "PERFUSION": "ASL/perfusion",
    "ASL": "ASL/perfusion",
    "CBF": "ASL/perfusion",
    "SWI": "SWI",
    "MNIP": "SWI",
    "T2_STAR": "SWI",
    "T2": "T2",
    "FLAIR": "FLAIR",
    "PROTON_DENSITY": "PD",
    "PD": "PD",
    "TOF": "TOF/MRA",
}
ACQUISITION_CONTRAST_KINDS = {
    "DIFFUSION": "DWI",
    "FLOW_ENCODED": "TOF/MRA",
    "FLUID_ATTENUATED": "FLAIR",
    "PERFUSION": "ASL/perfusion",
    "PROTON_DENSITY": "PD",
    "STIR": "STIR",
    "TAGGING": "tagging",
    "T2": "T2",
    "T2_STAR": "SWI",
    "TOF": "TOF/MRA",
}
# Vendor sequence names (Siemens SequenceName, Philips/enhanced PulseSequenceName, GE's private
# pulse sequence name), lower case: (pattern, kind). "T1" marks positive evidence.
SEQUENCE_NAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\*?fm\d|field|^b0"), "field map"),
    (re.compile(r"^\*?(?:ep|re)_?b\d|dwi|diff"), "DWI"),
    (re.compile(r"^\*?ep|epi|epfid|epse|feepi|seepi"), "EPI"),
    (re.compile(r"^\*?swi|swan|pc?ssfp_swi"), "SWI"),
    (re.compile(r"^\*?fl[23]d\d*r?_t\d|^\*?tof|inflow"), "TOF/MRA"),
    (re.compile(r"^\*?tfl|t1tfe|t1ffe|mprage|bravo|efgre3d|fspgr|spgr|^\*?fl3d|t1se"), "T1"),
)


@dataclasses.dataclass(frozen=True)
class Call:
    """A classification and the evidence for it.

    Attributes:
        value: weighting (``T1``, a non-T1 kind such as ``field map``, or ``unknown``) or contrast
            (``post``, ``pre`` or ``unknown``).
        kind: which evidence decided: ``coded`` (ImageType, AcquisitionContrast, …), ``sequence``
            (vendor sequence name), ``description``, ``timing``; for contrast ``header``,
            ``description``, ``acquisition order``; '' when nothing decided.
        evidence: short text for ``selection.tsv`` (keywords and coded values only).
    """

    value: str
    kind: str = ""
    evidence: str = ""


def description_text(header: Dataset) -> str:
    """SeriesDescription and ProtocolName, lower case (only matched, never written out)."""
    return " ".join(
        str(header.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName")
    ).lower()


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        return [v.strip().upper() for v in text.split("\\")]
    try:
        return [str(v).strip().upper() for v in value]
    except TypeError:
        return [str(value).strip().upper()]


def functional_groups(header: Dataset) -> list[Dataset]:
    """The places an attribute of an enhanced MR image can live: the top level, the shared
    functional groups and the first frame's groups."""
    groups = [header]
    for key in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        sequence = header.get(key)
        if sequence:
            groups.append(sequence[0])
    return groups


def group_value(header: Dataset, keyword: str, *sequences: str) -> Any:
    """First value of ``keyword`` at the top level or inside any of ``sequences`` of the functional
    groups (enhanced MR), or None."""
    for group in functional_groups(header):
        if group.get(keyword) not in (None, ""):
            return group.get(keyword)
        for name in sequences:
            items = group.get(name)
            if items and items[0].get(keyword) not in (None, ""):
                return items[0].get(keyword)
    return None


def _number(value: Any) -> float | None:
    try:
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            value = value[0]
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError, IndexError):
        return None


def _private_text(header: Dataset, tag: int) -> str:
    element = header.get(tag)
    if element is None:
        return ""
    value = element.value
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def sequence_name(header: Dataset) -> str:
    """The vendor's sequence name, lower case: Siemens SequenceName, PulseSequenceName (enhanced,
    Philips), GE's private (0019,109C) or Philips' private ScanningTechnique (2001,1020)."""
    for keyword in ("SequenceName", "PulseSequenceName"):
        value = group_value(header, keyword, "MRImagingModifierSequence")
        if value:
            return str(value).strip().lower()
    for tag in (0x0019109C, 0x20011020):
        text = _private_text(header, tag).strip().lower()
        if text:
            return text
    return ""


def _coded_other(header: Dataset, echoes: int) -> Call | None:
    """Non-T1 kinds stated by coded values (unambiguous whatever the description says)."""
    name = sequence_name(header)
    field_map = SEQUENCE_NAMES[0][0].search(name) if name else None
    if field_map:  # before ImageType: a field map's phase image is better named as such
        return Call("field map", "sequence", f"sequence name '{field_map.group(0)}'")
    types = _values(header.get("ImageType")) + _values(
        group_value(header, "FrameType", "MRImageFrameTypeSequence")
    )
    for value in types:
        if value in IMAGE_TYPE_KINDS and IMAGE_TYPE_KINDS[value] not in ("T2", "FLAIR", "PD"):
            return Call(IMAGE_TYPE_KINDS[value], "coded", f"ImageType {value}")
    component = str(group_value(header, "ComplexImageComponent", "MRImageFrameTypeSequence") or "")
    if component.upper() in ("PHASE", "REAL", "IMAGINARY"):
        return Call("phase", "coded", f"ComplexImageComponent {component.upper()}")
    contrast = str(group_value(header, "AcquisitionContrast", "MRImageFrameTypeSequence") or "")
    if contrast.upper() in ACQUISITION_CONTRAST_KINDS:
        kind = ACQUISITION_CONTRAST_KINDS[contrast.upper()]
        return Call(kind, "coded", f"AcquisitionContrast {contrast.upper()}")
    scanning = _values(header.get("ScanningSequence"))
    echo_planar = str(group_value(header, "EchoPlanarPulseSequence") or "").upper()
    b_value = _number(group_value(header, "DiffusionBValue", "MRDiffusionSequence"))
    if b_value is not None and b_value > 0:
        return Call("DWI", "coded", "DiffusionBValue (b-value) > 0")
    if "EP" in scanning or echo_planar == "YES":
        return Call(
            "EPI",
            "coded",
            "ScanningSequence EP" if "EP" in scanning else "EchoPlanarPulseSequence YES",
        )
    if echoes > 1:
        return Call("multi-echo", "coded", f"{echoes} EchoNumbers in one series")
    return None


def _timing(header: Dataset) -> Call:
    """T1 or another weighting from TR/TE/TI, only with a spin- or gradient-echo sequence type."""
    scanning = _values(header.get("ScanningSequence"))
    variant = _values(header.get("SequenceVariant"))
    echo_pulse = str(group_value(header, "EchoPulseSequence") or "").upper()
    kind = "/".join(s for s in scanning if s in ("SE", "GR", "IR")) or echo_pulse
    if not kind:
        return Call("unknown", "", "TR/TE without ScanningSequence: not enough to call T1")
    tr = _number(group_value(header, "RepetitionTime", "MRTimingAndRelatedParametersSequence"))
    te = _number(group_value(header, "EchoTime", "MREchoSequence")) or _number(
        group_value(header, "EffectiveEchoTime", "MREchoSequence")
    )
    ti = _number(group_value(header, "InversionTime", "MRModifierSequence"))
    if ti is None:
        ti = _number(group_value(header, "InversionTimes", "MRModifierSequence"))
    if tr is None or te is None:
        return Call("unknown", "", "")
    where = (
        f"TR/TE with {('ScanningSequence ' + kind) if scanning else ('EchoPulseSequence ' + kind)}"
    )
    prepared = "IR" in scanning or "MP" in variant or ti is not None
    if prepared and ti is not None:
        if ti >= 1500 and te >= 60:
            return Call("FLAIR", "timing", f"TI {ti:g} ms, {where}")
        if ti <= 250:
            return Call("STIR", "timing", f"TI {ti:g} ms, {where}")
        if 300 <= ti <= 1300 and tr <= 3000 and te <= 10:
            return Call("T1", "timing", f"TI {ti:g} ms (MPRAGE-like), {where}")
    if tr <= 800 and te <= 30:
        return Call("T1", "timing", f"TR {tr:g} ms, TE {te:g} ms, {where}")
    if te >= 60:
        return Call("T2", "timing", f"TE {te:g} ms, {where}")
    if tr >= 1500:
        return Call("PD", "timing", f"TR {tr:g} ms, TE {te:g} ms, {where}")
    return Call("unknown", "", "")


def weighting_of(header: Dataset, echoes: int = 1) -> Call:
    """Is the series positively a T1-weighted image, and on what evidence (module docstring)?

    Args:
        header: the series' first header (enhanced: with its functional groups).
        echoes: distinct EchoNumbers over the series' files (2 for a field map's magnitude pair).
    """
    coded = _coded_other(header, echoes)
    if coded is not None:
        return coded
    text = description_text(header)
    quantitative = OTHER_WORDS[0][0].search(text)
    if quantitative:
        return Call("quantitative map", "description", f"description '{quantitative.group(0)}'")
    t1 = T1_WORD.search(text)
    if t1:  # an explicit T1 wins over other words (GE's "T1 FLAIR", "T1 post")
        return Call("T1", "description", f"description '{t1.group(0).strip()}'")
    for pattern, kind in OTHER_WORDS[1:]:
        match = pattern.search(text)
        if match:
            return Call(kind, "description", f"description '{match.group(0).strip()}'")
    contrast = str(group_value(header, "AcquisitionContrast", "MRImageFrameTypeSequence") or "")
    if contrast.upper() == "T1":
        return Call("T1", "coded", "AcquisitionContrast T1")
    name = sequence_name(header)
    for pattern, kind in SEQUENCE_NAMES:
        match = pattern.search(name) if name else None
        if match:
            return Call(kind, "sequence", f"sequence name '{match.group(0)}'")
    return _timing(header)


def _agent_in_header(header: Dataset) -> str | None:
    """Which contrast field of the series' own header says an agent was given, or None."""
    for key in ("ContrastBolusAgent", "ContrastBolusIngredient"):
        value = str(header.get(key, "") or "").strip().lower()
        if value and value not in ("none", "no", "n", "0", "nein", "ohne", "-"):
            return key
    for group in functional_groups(header):  # enhanced MR: contrast usage lives in the groups
        for key in ("ContrastBolusUsageSequence", "ContrastBolusAgentSequence"):
            usage = group.get(key)
            if usage:
                administered = str(usage[0].get("ContrastBolusAgentAdministered", "YES")).upper()
                return key if administered != "NO" else None
    return None


def contrast_of(header: Dataset) -> Call:
    """Contrast stated by the series itself: a pre-contrast word, an agent in the header, or a
    post-contrast word (in that order); ``unknown`` when the series says nothing."""
    text = description_text(header)
    pre = PRE_WORDS.search(text)
    if pre:
        return Call("pre", "description", f"description '{pre.group(0).strip()}'")
    agent = _agent_in_header(header)
    if agent:
        return Call("post", "header", f"{agent} set")
    post = POST_WORDS.search(text)
    if post:
        return Call("post", "description", f"description '{post.group(0).strip()}'")
    return Call("unknown")
