"""Commands that make or read a cohort: ``synth``, ``convert``, ``bern``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sihnet.cli.options import CacheOption, app, echo
from sihnet.cli.summaries import ceiling_lines, convert_lines
from sihnet.errors import SihnetError


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    n: Annotated[int, typer.Option("--n", help="Patients (66/129 of them with fistula).")] = 129,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, identical files.")] = 0,
    spacing: Annotated[
        float | None,
        typer.Option(
            "--spacing",
            help="Voxel size in mm (3D: isotropic; default 1, or with --heads each head's own).",
        ),
    ] = None,
    reader_noise: Annotated[
        float, typer.Option("--reader-noise", help="SD (mm) of reader error in the Bern distances.")
    ] = 0.0,
    heads: Annotated[
        Path | None,
        typer.Option(
            "--heads",
            help="A folder of real healthy head scans (NIfTI): SIH is added to them instead of "
            "the built-in phantom (docs/synthetic.md).",
        ),
    ] = None,
    cache_dir: CacheOption = None,
) -> None:
    """Write a synthetic CE-T1 cohort with SIH signs: NIfTI files, cohort.csv, truth.csv,
    ceiling.json (the best any reader could do), montage.png. With --heads, the signs are added
    to real healthy heads with their exact truth."""
    from sihnet.schemas import CeilingFile, read_json
    from sihnet.synth.cohort import CEILING, MONTAGE, run_synth

    if heads is None:
        manifest = run_synth(out, n, seed, spacing or 1.0, reader_noise)
    else:
        from sihnet.preprocessing.cache import VolumeCache
        from sihnet.real_heads.cohort import head_files, run_real_synth

        cache = VolumeCache.open(cache_dir)
        manifest = run_real_synth(out, head_files(heads), cache, n, seed, spacing, reader_noise)
    for line in ceiling_lines(read_json(manifest.parent / CEILING, CeilingFile)):
        typer.echo(line)
    typer.echo(f"manifest: {manifest}")
    typer.echo(f"ceiling:  {manifest.parent / CEILING}")
    typer.echo(f"montage:  {manifest.parent / MONTAGE}")


@app.command()
def bern(
    manifest: Annotated[
        Path, typer.Argument(help="Cohort manifest (CSV/TSV) or BIDS root with Bern columns.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write patient_id,bern_score,bern_category,bern_complete."),
    ] = None,
) -> None:
    """Bern score per patient (partial when a field is missing) and its AUROC against the labels."""
    from sihnet.evaluation.bern_table import run_bern

    summary = run_bern(manifest, out)
    for line in summary:
        typer.echo(line)


@app.command()
def convert(
    dicom_dir: Annotated[
        Path, typer.Argument(help="Folder tree of DICOM studies (e.g. a PACS export).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (de-identified NIfTI + manifest).")
    ],
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file", help="Secret for keyed-hash pseudonyms (or $SIHNET_PSEUDONYM_KEY)."
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping", help="CSV original_id,pseudonym kept outside --out (extended in place)."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", help="CSV/TSV keyed by the original patient_id: label, Bern columns, …"
        ),
    ] = None,
    override: Annotated[
        Path | None,
        typer.Option(
            "--override",
            help="CSV study,series_number (study: StudyInstanceUID, accession or patient ID).",
        ),
    ] = None,
    quarantine_paths: Annotated[
        Path | None,
        typer.Option(
            "--quarantine-paths",
            help="Also write the source paths of quarantined files here (outside --out).",
        ),
    ] = None,
) -> None:
    """DICOM studies to de-identified NIfTI (BIDS layout) + manifest.csv, selection.tsv, quarantine.tsv."""
    from sihnet.ingest.convert import run_convert
    from sihnet.ingest.deid import Pseudonyms
    from sihnet.ingest.select import read_overrides

    pseudonyms = Pseudonyms.from_options(key_file, mapping)
    overrides = read_overrides(override) if override is not None else {}
    summary = run_convert(dicom_dir, out, pseudonyms, labels, overrides, quarantine_paths)
    echo(convert_lines(summary, out))
    if summary.converted == 0:
        raise SihnetError("no study was converted (see selection.tsv and quarantine.tsv)")
    if summary.failed or summary.quarantined or summary.uncertain:
        typer.echo(
            "sihnet: some input was not used or a pick is uncertain; see selection.tsv and quarantine.tsv",
            err=True,
        )
        raise typer.Exit(3)


@app.command()
def measure(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="A manifest (CSV/TSV) or NIfTI files and DICOM folders."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    cache_dir: CacheOption = None,
) -> None:
    """The automatic Bern reader: the six Bern items of each scan measured without training
    (distances in mm on the patient's own edges, continuous sign measures, the Bern score), with
    a measurement picture and a 3D Slicer markups file per scan."""
    from sihnet.preprocessing.cache import VolumeCache
    from sihnet.reader.measure import run_measure

    scans = _measure_inputs(inputs)
    summary = run_measure(scans, out, VolumeCache.open(cache_dir))
    typer.echo(
        f"read {summary.read} of {summary.read + summary.not_measured + summary.failed} scans"
        + (f"; not measured: {summary.not_measured}" if summary.not_measured else "")
        + (f"; could not be read: {summary.failed}" if summary.failed else "")
    )
    typer.echo(f"table:    {summary.table}")
    if summary.failed:
        raise typer.Exit(2)


def _measure_inputs(inputs: list[Path]) -> list[tuple[str, Path]]:
    """``(patient_id, image)`` of a manifest's rows, or ``("", image)`` of each image given.

    Raises:
        SihnetError: a manifest given beside images (one or the other).
    """
    tables = [p for p in inputs if p.suffix.lower() in (".csv", ".tsv")]
    if tables and len(inputs) > 1:
        raise SihnetError(
            f"{tables[0].name} is a manifest: give it alone, or images without a manifest"
        )
    if len(inputs) == 1 and inputs[0].suffix.lower() in (".csv", ".tsv"):
        from sihnet.data.manifest import read_manifest

        cohort = read_manifest(inputs[0], require_labels=False, require_images=False)
        return [(scan.patient_id, scan.image) for scan in cohort.scans]
    return [("", path) for path in inputs]
