"""The detector as ONNX: export (settings in the metadata) and a torch-free runner with the same
`detect(image)` as `Detector`, so the smear pipeline runs on ONNX Runtime alone."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from leukodx.data.smears import KINDS
from leukodx.detect.detector import FORMAT, Detections
from leukodx.errors import LeukodxError

ONNX_FORMAT = FORMAT + "+onnx"


def export_detector_onnx(det, out: str | Path) -> Path:
    import onnx
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    w, h = det.tile
    torch.onnx.export(det.model.eval(), ([torch.rand(3, h, w)],), str(tmp), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["boxes", "labels", "scores"],
                      dynamic_axes={"image": {1: "h", 2: "w"}, "boxes": {0: "n"}, "labels": {0: "n"}, "scores": {0: "n"}})
    m = onnx.load(str(tmp))
    meta = {"format": ONNX_FORMAT, "kinds": list(KINDS), "score_thresholds": det.score_thresholds,
            "rbc_diameter": det.rbc_diameter, "tile": list(det.tile)}
    m.metadata_props.add(key="leukodx", value=json.dumps(meta))
    onnx.save(m, str(tmp))
    tmp.replace(out)
    return out


class OnnxDetector:
    """Same answers as Detector.detect, on ONNX Runtime."""

    def __init__(self, path: str | Path, threads: int = 2):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get("leukodx", "{}"))
        except Exception as e:  # noqa: BLE001 - any broken file is the user's to hear about
            raise LeukodxError(f"{path}: not a readable ONNX detector ({type(e).__name__})") from None
        if meta.get("format") != ONNX_FORMAT or meta.get("kinds") != list(KINDS):
            raise LeukodxError(f"{path}: not a leukodx ONNX detector")
        self.score_thresholds, self.rbc_diameter = meta["score_thresholds"], float(meta["rbc_diameter"])
        self.tile = tuple(meta["tile"])

    def detect(self, image: np.ndarray) -> Detections:
        x = np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / 255
        boxes, labels, scores = self.session.run(None, {"image": x})
        return Detections(boxes.astype(np.float32), [KINDS[int(i) - 1] for i in labels], scores.astype(np.float32))
