"""Reports as captioning reads them: sections of MIMIC-CXR report files (written here in MIMIC's
layout), sentences about prior studies removed, each image given its study's report into a
manifest and on into the prepared cache; left and right swapped at word boundaries; the phantoms'
reports carry their labels exactly, as the labeller reads them back; the tokenizer round-trips
any text, keeps the end token when it truncates, and trains deterministically."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cxrfast.data.report_laterality import swap_laterality
from cxrfast.data.report_tokenizer import EOS_ID, PAD_ID, SOS_ID, ReportTokenizer
from cxrfast.data.reports import (attach_mimic_reports, drop_prior_references, mimic_report_path, read_report,
                                  report_sections)
from cxrfast.data.synthetic import FINDINGS, Finding, Findings, make_phantom
from cxrfast.data.synthetic_reports import phantom_report, read_findings, report_f1
from cxrfast.errors import DataError

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough  // ? pneumonia

 COMPARISON:  Chest radiograph from ___.

 FINDINGS:
 
 The cardiac silhouette is mildly enlarged, unchanged since the prior study.  There is a
 small left pleural effusion.  No pneumothorax.
 
 IMPRESSION:
 
 Small left effusion.  Interval increase in right basilar opacity.
"""


def test_the_chosen_sections_in_their_order():
    assert report_sections(MIMIC_REPORT) == (
        "The cardiac silhouette is mildly enlarged, unchanged since the prior study. There is a small left pleural "
        "effusion. No pneumothorax. Small left effusion. Interval increase in right basilar opacity.")
    assert report_sections(MIMIC_REPORT, ("IMPRESSION", "INDICATION")) == (
        "Small left effusion. Interval increase in right basilar opacity. ___F with cough // ? pneumonia")
    with pytest.raises(DataError, match="r.txt: none of the sections FINDINGS.*it has EXAMINATION"):
        report_sections("EXAMINATION: chest\nCOMPARISON: none", source="r.txt")


def test_sentences_about_prior_studies_are_removed():
    text = report_sections(MIMIC_REPORT)
    assert drop_prior_references(text) == ("There is a small left pleural effusion. No pneumothorax. Small left "
                                            "effusion.")
    assert drop_prior_references("Lines are stable. New right effusion. Compared to 2 days ago, worse.") == (
        "New right effusion.")


def _mimic(root, patient, study, images, text):
    folder = root / "files" / patient[:3] / patient / study
    folder.mkdir(parents=True)
    for image in images:
        (folder / image).write_bytes(b"")
    (root / "files" / patient[:3] / patient / f"{study}.txt").write_text(text)
    return [f"files/{patient[:3]}/{patient}/{study}/{image}" for image in images]


def test_each_image_gets_its_studys_report_and_the_cache_keeps_it(tmp_path):
    from cxrfast.data.prepare import prepare_cache
    from cxrfast.data.prepared_cache import PreparedCache
    from cxrfast.io.png_writer import write_png

    first = _mimic(tmp_path, "p10000032", "s50414267", ["a.png", "b.png"], MIMIC_REPORT)
    second = _mimic(tmp_path, "p10000764", "s57375967", ["c.png"], "FINDINGS: Right upper lobe nodule.\n")
    missing = "files/p11/p11000001/s59999999/d.png"
    for name in [*first, *second]:
        write_png(tmp_path / name, (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64))
    assert mimic_report_path(first[0], tmp_path) == tmp_path / "files/p10/p10000032/s50414267.txt"
    with pytest.raises(DataError, match="not in a MIMIC-CXR study folder"):
        mimic_report_path("images/a.png", tmp_path)
    (tmp_path / "images.csv").write_text("path,patient_id\n" + "".join(f"{n},{n.split('/')[2]}\n"
                                                                       for n in [*first, *second, missing]))
    out, left_out = attach_mimic_reports(tmp_path / "images.csv", tmp_path, tmp_path / "with_reports.csv",
                                         drop_priors=True)
    assert list(left_out) == [missing] and "no such report" in left_out[missing]
    with open(tmp_path / "with_reports.left_out.csv", newline="") as f:
        assert [(r["image"], r["reason"]) for r in csv.DictReader(f)] == list(left_out.items())
    from cxrfast.cli import main

    assert main(["manifest", "mimic-reports", str(tmp_path / "images.csv"), "--reports", str(tmp_path), "--out",
                 str(tmp_path / "cli.csv"), "--drop-priors"]) == 0
    assert (tmp_path / "cli.csv").read_text() == out.read_text()
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [*first, *second]
    assert rows[0]["report"] == rows[1]["report"] == read_report(tmp_path / "files/p10/p10000032/s50414267.txt",
                                                                 drop_priors=True)
    assert rows[2]["report"] == "Right upper lobe nodule."
    cache = PreparedCache(prepare_cache(out, tmp_path / "cache", size=32, workers=0, progress=False).root)
    assert [r["report"] for r in cache.records] == [r["report"] for r in rows]


@pytest.mark.parametrize("text, swapped", [
    ("Bright left effusion on an upright film.", "Bright right effusion on an upright film."),
    ("Left-sided line; RIGHT lung clear; Right hilum.", "Right-sided line; LEFT lung clear; Left hilum."),
    ("leftward shift of the rightmost tube", "rightward shift of the leftmost tube"),
    ("R/L markers, L hilum, lt. and Rt. bases; L1 and 2L unchanged", "L/R markers, R hilum, rt. and Lt. bases; "
     "L1 and 2L unchanged"),
    ("copyright, frighten, leftover", "copyright, frighten, leftover"),
])
def test_left_and_right_swap_at_word_boundaries_with_their_case(text, swapped):
    assert swap_laterality(text) == swapped
    assert swap_laterality(swapped) == text


def test_phantom_reports_carry_their_labels_exactly():
    findings = Findings({name: Finding(0.4) for name in FINDINGS})
    phantoms = [make_phantom(seed, 96, 96, findings=findings) for seed in range(40)]
    reports = [phantom_report(p) for p in phantoms]
    assert [read_findings(r) for r in reports] == [p.labels for p in phantoms]
    assert report_f1(reports, [p.labels for p in phantoms]) == 1.0
    assert len(set(reports)) == len(reports)  # varied phrasing and order
    assert sum(p.labels[n] for p in phantoms for n in FINDINGS) > 30  # positives of every kind occur
    for p, report in zip(phantoms, reports):
        if p.labels["Pleural Effusion"] and p.masks["Pleural Effusion"].any():
            # Image right is the patient's left: the side named is where the fluid lies.
            columns = p.masks["Pleural Effusion"].nonzero()[1]
            side = "left" if columns.mean() >= 48 else "right"
            assert f"{side} pleural effusion" in report or f"{side}-sided pleural effusion" in report
    assert [phantom_report(p, seed=1) for p in phantoms] != reports  # the seed draws the phrasing


def test_the_labeller_reads_negations():
    assert read_findings("No pneumothorax. The heart is mildly enlarged. Lungs without consolidation.") == {
        **dict.fromkeys(FINDINGS, 0), "Cardiomegaly": 1}
    assert read_findings("There is a small right pneumothorax. No effusion is seen.")["Pneumothorax"] == 1
    assert report_f1(["No nodule."], [{**dict.fromkeys(FINDINGS, 0), "Nodule": 1}]) == 0.0


def test_the_tokenizer_round_trips_truncates_to_the_end_token_and_is_deterministic(tmp_path):
    reports = [phantom_report(make_phantom(seed, 64, 64)) for seed in range(30)]
    odd = "Größe ≥ 3 cm at the R/L junction — ___ 😀"
    tokenizer = ReportTokenizer.train(reports, vocab_size=400)
    assert tokenizer.vocab_size == 400
    tokens, lengths = tokenizer.encode([*reports[:4], odd], max_length=256)
    for row, length, text in zip(tokens, lengths, [*reports[:4], odd]):
        # Row by row from the library's own single encoding: [SOS], its ids, [EOS], then padding.
        ids = tokenizer.tokenizer.encode(text, add_special_tokens=False).ids
        assert length == len(ids) + 2 and row[:length].tolist() == [SOS_ID, *ids, EOS_ID]
        assert (row[length:] == PAD_ID).all() and tokens.shape[1] == max(lengths)
        assert tokenizer.decode(row.tolist()) == text  # byte-level: nothing is unknown
    short, short_lengths = tokenizer.encode(reports[:2], max_length=8)
    assert short.shape == (2, 8) and (short[:, -1] == EOS_ID).all() and (short_lengths == 8).all()
    assert tokenizer.encode([], max_length=8)[0].shape == (0, 2)
    assert ReportTokenizer.train(reports, vocab_size=400).tokenizer.to_str() == tokenizer.tokenizer.to_str()
    loaded = ReportTokenizer.load(tokenizer.save(tmp_path / "tokenizer.json"))
    assert (loaded.encode(reports[:4], 256)[0] == tokenizer.encode(reports[:4], 256)[0]).all()


def test_a_phantom_archive_writes_each_report_beside_its_labels(tmp_path):
    from cxrfast.data.phantom_archive import write_phantom_archive

    labels = write_phantom_archive(tmp_path, 6, rows=64, reports=True, progress=False,
                                   findings=Findings({name: Finding(0.5) for name in FINDINGS}))
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [read_findings(r["report"]) for r in rows] == [{n: int(r[n]) for n in FINDINGS} for r in rows]
