"""Reports for the phantoms, and the findings read back from a report.

`phantom_report` writes what a radiologist would dictate for a phantom: one sentence per finding
of `FINDINGS`, positive with what its mask shows (the side, from where the region lies: image
right is the patient's left; upper or lower; a severity from its size or, for the heart, the
cardiothoracic ratio) or negated, each in one of several phrasings and the sentences in a drawn
order. So the text holds exactly the labels' information, plus the side and severity the image
shows, and captioning can be tested and demonstrated without real reports.

`read_findings` is the rule-based labeller for that vocabulary: a finding is positive when a
sentence names it without a negation before it. A generated report's findings scored against the
phantom's labels (`report_f1`) say whether the captioner learnt to see them.
"""

from __future__ import annotations

import re

import numpy as np

from cxrfast.data.synthetic import FINDINGS, Phantom

_SEVERITY = ("small", "moderate", "large")
_HEART = ("mildly", "moderately", "markedly")
# Per finding: positive phrasings (with {side}, {zone}, {severity}) and negative ones.
_PHRASES = {
    "Cardiomegaly": (("The heart is {severity} enlarged.", "The cardiac silhouette is {severity} enlarged.",
                      "There is {severity} cardiomegaly."),
                     ("The heart size is normal.", "No cardiomegaly.", "The cardiac silhouette is normal in size.")),
    "Pleural Effusion": (("{Severity} {side} pleural effusion.", "There is a {severity} {side} pleural effusion.",
                          "A {severity} {side}-sided pleural effusion is present."),
                         ("No pleural effusion.", "There is no pleural effusion.", "No effusion is seen.")),
    "Nodule": (("A nodule in the {side} {zone} lung.", "There is a {side} {zone} lung nodule.",
                "A {side} {zone} zone pulmonary nodule is seen."),
               ("No pulmonary nodule.", "There is no nodule.", "No nodule is seen.")),
    "Consolidation": (("Consolidation in the {side} {zone} lung.", "There is {side} {zone} zone consolidation.",
                       "Focal consolidation is seen in the {side} {zone} lung."),
                      ("No focal consolidation.", "There is no consolidation.", "The lungs are without consolidation.")),
    "Pneumothorax": (("{Severity} {side} pneumothorax.", "There is a {severity} {side} pneumothorax.",
                      "A {severity} {side}-sided pneumothorax is present."),
                     ("No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen.")),
}
# What names each finding in a sentence; a negation before the name makes the sentence negative.
_NAMES = {"Cardiomegaly": r"cardiomegaly|heart is \w+ enlarged|silhouette is \w+ enlarged",
          "Pleural Effusion": r"effusion", "Nodule": r"nodule", "Consolidation": r"consolidation",
          "Pneumothorax": r"pneumothorax"}
_NEGATION = re.compile(r"\b(no|not|without|normal)\b", re.IGNORECASE)


def _where(mask: np.ndarray) -> tuple[str, str]:
    """(the patient's side, upper or lower) of a region: image right is the patient's left."""
    rows, columns = np.nonzero(mask)
    side = "left" if columns.mean() >= mask.shape[1] / 2 else "right"
    return side, "upper" if rows.mean() < mask.shape[0] / 2 else "lower"


def _severity(phantom: Phantom, name: str) -> str:
    if name == "Cardiomegaly":  # the ratio's normal limit is 0.5
        return _HEART[int(np.digitize(phantom.cardiothoracic_ratio, [0.57, 0.62]))]
    share = phantom.masks[name].sum() / max(1, phantom.lung_mask.sum() + phantom.masks[name].sum())
    return _SEVERITY[int(np.digitize(share, [0.08, 0.2]))]


def phantom_report(phantom: Phantom, seed: int = 0) -> str:
    """The report of `phantom`, its phrasing and order drawn from (`seed`, the phantom's seed)."""
    rng = np.random.default_rng([seed, phantom.seed])
    sentences = []
    for name in FINDINGS:
        positive = bool(phantom.labels[name])
        phrase = _PHRASES[name][0 if positive else 1][rng.integers(3)]
        if positive and not phantom.masks[name].any():  # too small to show at this size: no side to tell
            phrase = f"{name} is present."
        elif positive:
            side, zone = _where(phantom.masks[name])
            severity = _severity(phantom, name)
            phrase = phrase.format(side=side, zone=zone, severity=severity, Severity=severity.capitalize())
        sentences.append(phrase)
    return " ".join(sentences[k] for k in rng.permutation(len(sentences)))


def read_findings(report: str) -> dict[str, int]:
    """1 for each finding a sentence of `report` names without a negation before the name, else 0."""
    found = dict.fromkeys(FINDINGS, 0)
    for sentence in re.split(r"(?<=[.!?])\s+", report):
        for name, pattern in _NAMES.items():
            mention = re.search(pattern, sentence, re.IGNORECASE)
            if mention and not _NEGATION.search(sentence[:mention.start()]):
                found[name] = 1
    return found


def report_f1(reports: list[str], labels: list[dict[str, int]]) -> float:
    """Micro-averaged F1 of the findings `read_findings` reads from `reports` against `labels`."""
    read = np.array([[read_findings(r)[f] for f in FINDINGS] for r in reports], bool)
    truth = np.array([[int(bool(lab[f])) for f in FINDINGS] for lab in labels], bool)
    tp, fp, fn = (read & truth).sum(), (read & ~truth).sum(), (~read & truth).sum()
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0
