"""Radiology reports as captioning reads them: the sections that describe the image, optionally
without the sentences that compare it with earlier studies, one report per study.

MIMIC-CXR keeps one free-text report per study, `files/p10/p10000032/s50414267.txt`, beside the
study's folder of images (`files/p10/p10000032/s50414267/<dicom_id>.dcm`, or `.jpg` in
MIMIC-CXR-JPG), headed sections in capitals ("EXAMINATION:", "INDICATION:", "COMPARISON:",
"FINDINGS:", "IMPRESSION:"). Captioning learns from what the image shows, so the FINDINGS and
IMPRESSION sections are kept by default; a report with none of the chosen sections is an error
naming the file, not an empty caption.

A sentence that compares with a prior study ("unchanged since ...", "interval increase") states
what no single image holds; `drop_prior_references` removes such sentences (a word list, the
approach of CXR-ReDonE's rule set; a model would miss fewer).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from cxrfast.atomic import write_text_atomically
from cxrfast.errors import DataError

DEFAULT_SECTIONS = ("FINDINGS", "IMPRESSION")
REPORT_COLUMN = "report"
_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]*[A-Z)]):", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_PRIOR = re.compile(
    r"\b(prior|previous(ly)?|earlier|comparison|compared|interval(ly)?|since|unchanged|again (seen|noted|"
    r"demonstrated)|no (significant )?change|stable|improv(ed|ing|ement)|worsen(ed|ing)|progress(ed|ion)|"
    r"resolv(ed|ing)|persist(s|ent|ing)|re-?demonstrated)\b", re.IGNORECASE)
_STUDY = re.compile(r"^s\d+$")


def report_sections(text: str, sections: tuple[str, ...] = DEFAULT_SECTIONS, *, source: str = "report") -> str:
    """The chosen sections of a report, in the order given, whitespace collapsed. DataError naming
    `source` when it has none of them."""
    headings = list(_HEADING.finditer(text))
    bodies: dict[str, str] = {}
    for k, heading in enumerate(headings):
        end = headings[k + 1].start() if k + 1 < len(headings) else len(text)
        bodies.setdefault(heading.group(1).strip().upper(), " ".join(text[heading.end():end].split()))
    chosen = [bodies[name] for name in (s.upper() for s in sections) if bodies.get(name)]
    if not chosen:
        found = ", ".join(bodies) or "no headed sections"
        raise DataError(f"{source}: none of the sections {', '.join(sections)} (it has {found})")
    return " ".join(chosen)


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def drop_prior_references(text: str) -> str:
    """`text` without its sentences that refer to an earlier study."""
    return " ".join(s for s in sentences(text) if not _PRIOR.search(s))


def mimic_report_path(image: str | os.PathLike, reports: str | os.PathLike) -> Path:
    """The report of a MIMIC-CXR image: `reports/files/pXX/pNNNNNNNN/sNNNNNNNN.txt` for an image
    under `.../files/pXX/pNNNNNNNN/sNNNNNNNN/`."""
    parts = Path(image).parts
    studies = [k for k, part in enumerate(parts) if _STUDY.match(part)]
    if not studies or studies[-1] < 2:
        raise DataError(f"{image}: not in a MIMIC-CXR study folder (.../pXX/pNNNNNNNN/sNNNNNNNN/)")
    k = studies[-1]
    return Path(reports) / "files" / parts[k - 2] / parts[k - 1] / f"{parts[k]}.txt"


def read_report(path: str | os.PathLike, sections: tuple[str, ...] = DEFAULT_SECTIONS, *,
                drop_priors: bool = False) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such report")
    text = report_sections(path.read_text(encoding="utf-8", errors="replace"), sections, source=str(path))
    if drop_priors:
        text = drop_prior_references(text)
        if not text:
            raise DataError(f"{path}: every sentence of {', '.join(sections)} refers to a prior study")
    return text


def attach_mimic_reports(manifest: str | os.PathLike, reports: str | os.PathLike, out: str | os.PathLike, *,
                         sections: tuple[str, ...] = DEFAULT_SECTIONS, drop_priors: bool = False,
                         path_column: str = "path") -> tuple[Path, dict[str, str]]:
    """`manifest` with a `report` column, each image's study report, written to `out`; images
    whose report is missing or unusable are left out, listed with the reason in
    `left_out_path(out)` and returned (image -> reason). `prepare` carries the column into the
    cache's manifest."""
    manifest = Path(manifest)
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = list(reader.fieldnames or []), list(reader)
    if path_column not in fields:
        raise DataError(f"{manifest}: no {path_column!r} column naming the images")
    kept, left_out, by_study = [], {}, {}
    for row in rows:
        try:
            report_file = mimic_report_path(row[path_column], reports)
            if report_file not in by_study:
                by_study[report_file] = read_report(report_file, sections, drop_priors=drop_priors)
            kept.append({**row, REPORT_COLUMN: by_study[report_file]})
        except DataError as e:
            left_out[row[path_column]] = str(e)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*fields, *[REPORT_COLUMN] * (REPORT_COLUMN not in fields)])
    writer.writeheader()
    writer.writerows(kept)
    listed = io.StringIO()
    csv.writer(listed).writerows([("image", "reason"), *left_out.items()])
    write_text_atomically(left_out_path(out), listed.getvalue())
    return write_text_atomically(out, text.getvalue()), left_out


def left_out_path(out: str | os.PathLike) -> Path:
    """Where `attach_mimic_reports` lists the images it left out."""
    return Path(out).with_suffix(".left_out.csv")
