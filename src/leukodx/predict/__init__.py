"""Prediction: load a model file, predict images or folders, refer uncertain cases."""
from leukodx.predict.predictor import Prediction, Predictor, collect_images, write_predictions

__all__ = ["Prediction", "Predictor", "collect_images", "write_predictions"]
