"""Sudhakar et al. classic CNN pipeline for leukemia types (ALL / AML / CLL / CML / healthy).

The pipeline, as leukodx config (see configs/classic_cnn.yaml):
  resize -> threshold segmentation (`mask_background: true`: Otsu threshold of the blurred grey
  histogram, largest dark component = the cell, background whitened; `keep_cytoplasm: true` keeps the
  whole white cell instead, cell_finder.whole_cell_mask) -> Gaussian low-pass filter
  (`gaussian_sigma`) -> grayscale (`grayscale: true`) -> this CNN.
Model: four Conv2D 3x3 + ReLU + 2x2 max-pool stages (32, 64, 128, 128 filters), flatten, dense 128
ReLU, dropout 0.5, softmax class layer (cross-entropy). The paper's comparison models are timm's
`resnet34` and `densenet169` (pretrained=True needs internet; here they train from scratch).
Prediction output adds the cell mask and the image with the detected region outlined:
`leukodx predict --outline DIR` (see predict/outline.py).
"""
from __future__ import annotations

from leukodx.models.base import from_scratch_only
from leukodx.models.registry import register_model
from leukodx.models.thesis_cnn import ThesisCNN

WIDTHS = (32, 64, 128, 128)


@register_model
def classic_cnn(num_classes: int, pretrained: bool = False, img_size: int = 224, **kwargs):
    from_scratch_only("classic_cnn", pretrained)
    kwargs = {"widths": WIDTHS, "batchnorm": False, **kwargs}
    return ThesisCNN(num_classes, img_size=img_size, **kwargs)
