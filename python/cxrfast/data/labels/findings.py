"""The one vocabulary of findings: CheXpert's names, used by every label reader, the phantoms
and the linear probe, so that "Pleural Effusion" means the same column wherever it comes from.

CheXpert and MIMIC-CXR-JPG (same labeller) already use these names. NIH ChestX-ray14 spells two
of them differently (`NIH_SPELLINGS`) and has seven findings CheXpert lacks; they keep NIH's
names, spaced like CheXpert's. NIH's "Nodule" and "Mass" stay apart and are not mapped to
CheXpert's "Lung Lesion": that one covers both (and more), so a Lung Lesion positive says
nothing about which, and merging would relabel NIH's images. RSNA's "Pneumonia" is CheXpert's.
"""

from __future__ import annotations

from types import MappingProxyType

# CheXpert's 14 observations, in the order of its CSV columns.
CHEXPERT_FINDINGS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                     "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                     "Pleural Other", "Fracture", "Support Devices")
# The five of CheXpert's competition (Irvin et al., 2019), which papers report as the mean AUROC.
COMPETITION_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# NIH ChestX-ray14's findings that CheXpert has no name for.
NIH_ONLY_FINDINGS = ("Infiltration", "Mass", "Nodule", "Emphysema", "Fibrosis", "Pleural Thickening", "Hernia")
FINDINGS = CHEXPERT_FINDINGS + NIH_ONLY_FINDINGS

# NIH's spelling -> the vocabulary's, where they differ.
NIH_SPELLINGS = MappingProxyType({"Effusion": "Pleural Effusion", "Pleural_Thickening": "Pleural Thickening"})

