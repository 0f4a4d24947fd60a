"""Export a model bundle to ONNX (logits; normalisation and temperature stay outside) and run it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from leukodx.models.artifact import ModelBundle


def export_onnx(bundle: ModelBundle, out: str | Path) -> Path:
    out = Path(out)
    size = bundle.preprocess["image_size"]
    model = bundle.model.eval()
    tmp = out.with_suffix(".onnx.tmp")
    torch.onnx.export(model, torch.randn(1, 3, size, size), str(tmp), dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, opset_version=17)
    tmp.replace(out)
    return out


class OnnxRunner:
    """Callable like the torch model: normalised float batch -> logits tensor, via ONNX Runtime."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0])
