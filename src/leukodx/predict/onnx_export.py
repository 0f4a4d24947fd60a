"""Export a model bundle to ONNX (logits; normalisation and temperature stay outside) and run it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from leukodx.errors import LeukodxError
from leukodx.models.artifact import ModelBundle
from leukodx.predict.results import network_threads


def export_onnx(bundle: ModelBundle, out: str | Path) -> Path:
    """Network as ONNX with two outputs, logits and the unfamiliar-image distance, and what prediction
    needs (classes, preprocessing, temperature, referral thresholds) in the file's metadata under
    'leukodx', so predict.lean can run it without torch."""
    import json

    import onnx

    if bundle.tree_head is not None:
        raise LeukodxError("this model has an XGBoost head, which ONNX export does not cover; use the .pt file")
    out = Path(out)
    size = bundle.preprocess["image_size"]
    model = bundle.net().eval()
    tmp = out.with_suffix(".onnx.tmp")
    torch.onnx.export(model, torch.randn(2, 3, size, size), str(tmp), dynamo=False, input_names=["x"],
                      output_names=["logits", "unfamiliarity"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}, "unfamiliarity": {0: "n"}}, opset_version=17)
    m = onnx.load(str(tmp))
    meta = {"format": "leukodx-onnx/1", "arch": bundle.arch, "classes": list(bundle.classes),
            "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in bundle.preprocess.items()},
            "temperature": float(bundle.temperature), "refer_threshold": float(bundle.refer_threshold),
            "unfamiliar_threshold": float(bundle.unfamiliar_threshold),
            "conformal_qhat": bundle.conformal_qhat, "conformal_alpha": float(bundle.conformal_alpha),
            "views": int(bundle.views),  # already averaged inside the graph; for the record
            "gray_fallback": bool(bundle.gray_fallback),
            "cell_probe": bundle.cell_probe is not None}  # inside the graph (heads.cell_probe); for the record
    onnx.helper.set_model_props(m, {"leukodx": json.dumps(meta)})
    onnx.save(m, str(tmp))
    tmp.replace(out)
    return out


class OnnxRunner:
    """Callable like `ModelBundle.net()`: normalised float batch -> (logits, distance), via ONNX Runtime."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or network_threads()
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.session.run(None, {"x": np.ascontiguousarray(x.numpy(), dtype=np.float32)})
        return torch.from_numpy(out[0]), torch.from_numpy(out[1] if len(out) > 1 else np.zeros(len(out[0]), np.float32))
