"""Evaluation: metrics with bootstrap CIs, calibration, referral, baselines, reports."""
from leukodx.evaluate.metrics import compute_metrics

__all__ = ["compute_metrics"]
