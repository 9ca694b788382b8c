"""Evaluation: the linear probe, operating points chosen on validation (and, to come, the
fine-tuning metrics and statistics)."""

from cxrfast.eval.linear_probe import ProbeResult, ProbeSet, linear_probe
from cxrfast.eval.thresholds import per_finding, sensitivity_threshold, youden_threshold

__all__ = ["ProbeResult", "ProbeSet", "linear_probe", "per_finding", "sensitivity_threshold", "youden_threshold"]
