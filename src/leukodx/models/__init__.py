"""Models: a registry over timm plus one file per leukodx model family."""
from leukodx.models import efficientnet_lite, thesis_cnn  # noqa: F401  (register the families)
from leukodx.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
