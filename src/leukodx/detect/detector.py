"""The smear-field detector: torchvision Faster R-CNN on an EfficientNet-Lite0 + FPN backbone.

The backbone carries the offline ImageNet weights (leukodx.models.efficientnet_lite). The detector
never resizes its input: the smear pipeline brings each field to the training scale first
(leukodx.detect.scale), so a box is always in the pixels it was given.
The file holds weights, kinds, score threshold and the training scale; it loads with weights_only=True.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leukodx.data.smears import KINDS
from leukodx.errors import LeukodxError
from leukodx.transforms.preprocess import IMAGENET_MEAN, IMAGENET_STD

FORMAT = "leukodx-detector/1"
ARCH = "fasterrcnn_lite0_fpn"


class LiteFPN(nn.Module):
    """EfficientNet-Lite0 stages at strides 8 / 16 / 32 + a feature pyramid (and a max-pooled level).
    Batch-norm statistics stay as pretrained (a few fields per batch cannot estimate them)."""

    def __init__(self, pretrained: bool, channels: int = 128, frozen_blocks: int = 2):
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        from leukodx.models.efficientnet_lite import efficientnet_lite0

        super().__init__()
        net = efficientnet_lite0(num_classes=0, pretrained=pretrained)
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.blocks = net.blocks
        self.taps = (2, 4, 6)
        for m in [self.stem, *self.blocks[:frozen_blocks]]:
            m.requires_grad_(False)
        chans = [self.blocks[i][-1].conv_pwl.out_channels for i in self.taps]
        self.fpn = FeaturePyramidNetwork(chans, channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = channels

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x):
        x = self.stem(x)
        taps = OrderedDict()
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                taps[str(i)] = x
        return self.fpn(taps)


def _no_resize_transform():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class NoResize(GeneralizedRCNNTransform):
        def resize(self, image, target=None):
            return image, target

    return NoResize(1, 1, list(IMAGENET_MEAN), list(IMAGENET_STD), size_divisible=32)


def create_detector(pretrained: bool = False, fpn_channels: int = 128) -> nn.Module:
    """Faster R-CNN for len(KINDS) kinds + background; anchors span platelets (~30 px) to large WBCs."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    backbone = LiteFPN(pretrained, fpn_channels)
    anchors = AnchorGenerator(sizes=((24, 40), (64, 96), (128, 176), (256, 352)), aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    model = FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors,
                       box_roi_pool=MultiScaleRoIAlign(["2", "4", "6"], 7, 2),
                       box_head=TwoMLPHead(fpn_channels * 49, 256), box_predictor=FastRCNNPredictor(256, len(KINDS) + 1),
                       box_detections_per_img=300, rpn_pre_nms_top_n_test=600, rpn_post_nms_top_n_test=300,
                       box_score_thresh=0.05)
    model.transform = _no_resize_transform()
    return model


def is_detector_file(path: str | Path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not ours to judge here; the model loader reports it
        return False
    return isinstance(d, dict) and d.get("format") == FORMAT


@dataclass
class Detections:
    boxes: np.ndarray          # float32 (N, 4) xmin, ymin, xmax, ymax
    kinds: list[str]
    scores: np.ndarray         # float32 (N,)

    def __len__(self) -> int:
        return len(self.kinds)

    def confident(self, thresholds: dict[str, float]) -> Detections:
        """The boxes at or above their kind's score threshold."""
        return self.keep([s >= thresholds[k] for k, s in zip(self.kinds, self.scores)])

    def keep(self, mask) -> Detections:
        mask = np.asarray(mask, bool)
        return Detections(self.boxes[mask], [k for k, m in zip(self.kinds, mask) if m], self.scores[mask])

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), [], np.zeros(0, np.float32))


@dataclass
class Detector:
    model: nn.Module
    score_thresholds: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0.5))  # per kind; below: dropped
    rbc_diameter: float = 105.0         # median red-cell box side in training fields (pixels): the training scale
    tile: tuple[int, int] = (640, 480)  # input size it was trained on; larger fields are tiled
    info: dict = field(default_factory=dict)

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> Detections:
        """uint8 (H, W, 3) at training scale -> every box above 0.05 score (threshold applied later)."""
        x = torch.from_numpy(np.array(image, np.float32)).permute(2, 0, 1).div_(255)
        out = self.model.eval()([x])[0]
        return Detections(out["boxes"].numpy().astype(np.float32), [KINDS[int(i) - 1] for i in out["labels"]],
                          out["scores"].numpy().astype(np.float32))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "arch": ARCH, "kinds": list(KINDS), "score_thresholds": {k: float(v) for k, v in self.score_thresholds.items()},
                   "rbc_diameter": float(self.rbc_diameter), "tile": list(self.tile), "info": self.info,
                   "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}}
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        from leukodx.models.artifact import read_payload

        path = Path(path)
        d = read_payload(path, FORMAT, "detector")
        if d.get("arch") != ARCH:
            raise LeukodxError(f"{path}: detector architecture {d.get('arch')!r} is not {ARCH}")
        if list(d.get("kinds", [])) != list(KINDS):
            raise LeukodxError(f"{path}: detector kinds {d.get('kinds')} differ from {list(KINDS)}")
        thr, diam = d.get("score_thresholds"), d.get("rbc_diameter")
        if not (isinstance(thr, dict) and set(thr) == set(KINDS) and all(isinstance(v, float) and 0 < v < 1 for v in thr.values())
                and isinstance(diam, float) and 4 <= diam <= 1000):
            raise LeukodxError(f"{path}: detector settings out of range (threshold {thr}, rbc diameter {diam})")
        model = create_detector(pretrained=False)
        try:
            model.load_state_dict(d["state_dict"])
        except Exception as e:  # noqa: BLE001 - weights that do not fit the architecture
            raise LeukodxError(f"{path}: weights do not fit {ARCH} ({type(e).__name__})") from None
        return cls(model.eval(), thr, diam, tuple(int(v) for v in d.get("tile", (640, 480))), d.get("info", {}))
