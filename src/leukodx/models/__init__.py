"""Models: a registry over timm plus one file per leukodx model family."""
from leukodx.models import (  # noqa: F401  (register the families)
    classic_cnn,
    ddrnet,
    efficientnet_lite,
    hybrid_cnn_vit,
    thesis_cnn,
    thesis_vit,
    xincept_all,
)
from leukodx.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
