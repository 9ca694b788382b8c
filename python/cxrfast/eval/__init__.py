"""Evaluation: the linear probe, `predictions.csv` (what a fine-tuned model said of each image),
per-finding AUROC, operating points chosen on validation, per-image Dice of segmentation masks
(and, to come, the statistics papers report)."""

from cxrfast.eval.auroc import mean_defined, per_finding_auroc
from cxrfast.eval.dice import per_image_dice
from cxrfast.eval.linear_probe import ProbeResult, ProbeSet, linear_probe
from cxrfast.eval.predictions import Predictions
from cxrfast.eval.thresholds import per_finding, sensitivity_threshold, youden_threshold

__all__ = ["Predictions", "ProbeResult", "ProbeSet", "linear_probe", "mean_defined", "per_finding",
           "per_finding_auroc", "per_image_dice", "sensitivity_threshold", "youden_threshold"]
