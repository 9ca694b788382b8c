"""Evaluation: the linear probe, `predictions.csv` (what a fine-tuned model said of each image),
operating points chosen on validation (and, to come, the fine-tuning metrics and statistics)."""

from cxrfast.eval.linear_probe import ProbeResult, ProbeSet, linear_probe
from cxrfast.eval.predictions import Predictions
from cxrfast.eval.thresholds import per_finding, sensitivity_threshold, youden_threshold

__all__ = ["Predictions", "ProbeResult", "ProbeSet", "linear_probe", "per_finding", "sensitivity_threshold",
           "youden_threshold"]
