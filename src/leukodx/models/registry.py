"""Model registry: `create_model(name, num_classes, pretrained=...)` for our families and all of timm.

Every model returned has timm's interface: `forward_features(x)` -> feature map (or tokens),
`forward_head(x, pre_logits=False)` -> logits, `get_classifier()`, and `pretrained_cfg`
with the `mean` / `std` / `input_size` it expects. Grad-CAM, feature extraction and export
rely on that interface only.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from leukodx.errors import LeukodxError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# Short names users type, mapped to timm's names.
ALIASES = {
    "xception": "legacy_xception",
    "vit": "vit_small_patch16_224",
    "efficientnet": "efficientnet_b0",
}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: the function's name becomes the model name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY) + sorted(ALIASES)


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def sized_kwargs(name: str, image_size: int, kwargs: dict) -> dict:
    """Add `img_size` for our families whose layers depend on the input side (flatten heads,
    token grids); timm models and EfficientNet-Lite take any size and get kwargs unchanged."""
    import inspect

    fn = _REGISTRY.get(name)
    if fn is None or "img_size" in kwargs:
        return dict(kwargs)
    if "img_size" in inspect.signature(fn).parameters:
        return {"img_size": image_size, **kwargs}
    return dict(kwargs)


def create_model(name: str, num_classes: int, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a model by name. Our families first, then timm (with `pretrained=True` going through
    timm's normal download path, which needs internet)."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise LeukodxError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if name in _REGISTRY:
        try:
            model = _REGISTRY[name](num_classes=num_classes, pretrained=pretrained, **kwargs)
            return _init_head(model) if pretrained else model
        except TypeError as e:
            raise LeukodxError(f"model '{name}' does not take these model_kwargs ({e})") from None
    import timm

    timm_name = ALIASES.get(name, name)
    if not timm.is_model(timm_name):
        raise LeukodxError(f"unknown model '{name}'; leukodx models: {', '.join(sorted(_REGISTRY))}; "
                           "or any timm model name (timm.list_models())")
    try:
        model = timm.create_model(timm_name, pretrained=pretrained, num_classes=num_classes, **kwargs)
        return _init_head(model) if pretrained else model
    except TypeError as e:
        raise LeukodxError(f"model '{name}' does not take these model_kwargs ({e})") from None
    except (OSError, RuntimeError) as e:
        if pretrained:
            raise LeukodxError(f"could not fetch ImageNet weights for '{name}' ({type(e).__name__}); this needs "
                               "internet access to the Hugging Face hub. Use pretrained=False, or an offline "
                               "model such as efficientnet_lite0.") from None
        raise


def linear_classifier(model: nn.Module) -> nn.Linear | None:
    """The model's classifier where it is one linear layer on the pooled features (what adapt, the linear-probe
    start and the domain head build on), else None."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return head if isinstance(head, nn.Linear) else None


def _init_head(model: nn.Module) -> nn.Module:
    """Pretrained backbones only: small-normal init of the fresh linear classifier (timm's fan-out
    init for EfficientNet gives logits of +-10 on few classes, which wrecks the first fine-tuning
    steps). From-scratch models keep their family's own (timm-style) initialisation."""
    head = linear_classifier(model)
    if head is not None:
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
    return model
