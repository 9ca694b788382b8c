"""Label files of public chest X-ray datasets (CheXpert, MIMIC-CXR-JPG, NIH ChestX-ray14, RSNA
Pneumonia) read into one `LabelTable`, with uncertainty policies, patient-level splits and nested
label-fraction subsets."""

from cxrfast.data.labels.chexpert import read_chexpert
from cxrfast.data.labels.mimic import read_mimic
from cxrfast.data.labels.nih import read_nih
from cxrfast.data.labels.rsna import read_rsna
from cxrfast.data.labels.splits import label_fraction_subsets, official_split, split_by_patient
from cxrfast.data.labels.table import POLICIES, LabelTable, SkippedRow

__all__ = ["POLICIES", "LabelTable", "SkippedRow", "label_fraction_subsets", "official_split", "read_chexpert",
           "read_mimic", "read_nih", "read_rsna", "split_by_patient"]
