"""Training: the Lightning module and the run that produces a model file and its test report."""
from leukodx.train.run import train

__all__ = ["train"]
