"""leukodx: explainable leukemia diagnosis from blood-smear images."""
__version__ = "0.1.0"
