"""Evaluation as radiology papers report it, on numpy and scipy alone (no torch): `predictions.csv`
(what a fine-tuned model said of each image), per-finding AUROC, DeLong's CI and paired test,
operating points chosen on validation, and per-image Dice of segmentation masks."""

from cxrfast.eval.auroc import auroc, mean_defined, per_finding_auroc, placements
from cxrfast.eval.delong import AurocInterval, DelongTest, delong_interval, delong_test
from cxrfast.eval.dice import per_image_dice
from cxrfast.eval.predictions import Predictions
from cxrfast.eval.thresholds import per_finding, sensitivity_threshold, youden_threshold

__all__ = ["AurocInterval", "DelongTest", "Predictions", "auroc", "delong_interval", "delong_test", "mean_defined",
           "per_finding", "per_finding_auroc", "per_image_dice", "placements", "sensitivity_threshold",
           "youden_threshold"]
