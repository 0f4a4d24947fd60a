"""Prediction: load a model file, predict images or folders, refer uncertain cases.

`Predictor` (PyTorch or ONNX backend) lives in predict.predictor; `OnnxPredictor` in predict.lean
runs a shipped .onnx file without importing torch (for small deployments)."""


def __getattr__(name):  # lazy, so `import leukodx.predict.lean` stays torch-free
    if name in ("Predictor",):
        from leukodx.predict.predictor import Predictor
        return Predictor
    if name in ("Prediction", "collect_images", "write_predictions"):
        from leukodx.predict import results
        return getattr(results, name)
    raise AttributeError(name)
