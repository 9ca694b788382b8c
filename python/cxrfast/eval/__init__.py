"""Evaluation: the linear probe (and, to come, fine-tuning metrics and statistics)."""

from cxrfast.eval.linear_probe import ProbeResult, ProbeSet, linear_probe

__all__ = ["ProbeResult", "ProbeSet", "linear_probe"]
