"""Classifier heads that are not network layers (scikit-learn style)."""
from leukodx.heads.temperature import TemperatureScaler

__all__ = ["TemperatureScaler"]
