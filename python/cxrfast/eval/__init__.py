"""Evaluation as radiology papers report it, on numpy and scipy alone (no torch): `predictions.csv`
(what a fine-tuned model said of each image), per-finding AUROC, DeLong's CI and paired test,
bootstrap CIs and paired tests on shared replicates, multiple-comparison corrections, operating
points chosen on validation, and per-image Dice of segmentation masks with its bootstrap."""

from cxrfast.eval.auroc import auroc, mean_defined, per_finding_auroc, placements
from cxrfast.eval.bootstrap import BootstrapInterval, BootstrapTest, bootstrap_interval, bootstrap_test
from cxrfast.eval.delong import AurocInterval, DelongTest, delong_interval, delong_test
from cxrfast.eval.dice import per_image_dice
from cxrfast.eval.dice_bootstrap import DiceBootstrap, bootstrap_dice
from cxrfast.eval.multiple_comparisons import benjamini_hochberg, holm
from cxrfast.eval.operating_point import OperatingPoint, operating_point
from cxrfast.eval.predictions import Predictions
from cxrfast.eval.resamples import Resamples, draw_resamples
from cxrfast.eval.thresholds import per_finding, sensitivity_threshold, specificity_threshold, youden_threshold

__all__ = ["AurocInterval", "BootstrapInterval", "BootstrapTest", "DelongTest", "DiceBootstrap", "OperatingPoint",
           "Predictions", "Resamples", "auroc", "benjamini_hochberg", "bootstrap_dice", "bootstrap_interval",
           "bootstrap_test", "delong_interval", "delong_test", "draw_resamples", "holm", "mean_defined",
           "operating_point", "per_finding", "per_finding_auroc", "per_image_dice", "placements",
           "sensitivity_threshold", "specificity_threshold", "youden_threshold"]
