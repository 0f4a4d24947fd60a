"""What sits on a network without being a layer (scikit-learn style): temperature, XGBoost head,
referral (thresholds, unfamiliar-image distance, image checks), few-shot adaptation."""


def __getattr__(name):  # lazy, so the torch-free ONNX path can import heads.referral
    if name == "TemperatureScaler":
        from leukodx.heads.temperature import TemperatureScaler
        return TemperatureScaler
    raise AttributeError(name)
