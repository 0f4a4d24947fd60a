"""`leukodx demo`: the whole path (data -> split -> train -> evaluate -> report -> predict) in minutes."""
from __future__ import annotations

import json
from pathlib import Path

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.synthetic import generate
from leukodx.predict.predictor import Predictor, collect_images, write_predictions
from leukodx.train.run import train


def run_demo(out: str | Path = "demo_out", data: str | None = None, epochs: int = 6, progress: bool = True) -> dict:
    out = Path(out)
    if data is None:
        index = generate(out / "synthetic_data", n_per_class=80, size=96, seed=0)
        cfg = TrainConfig(data=str(out / "synthetic_data" / "manifest.csv"), model="efficientnet_lite0",
                          image_size=96, epochs=epochs, freeze_epochs=1, lr=2e-3, augment="seed", use_hashes=False,
                          bootstrap=500, early_stopping_patience=0)
    else:
        index = load_dataset(data)
        cfg = TrainConfig(data=data, model="efficientnet_lite0", image_size=128, epochs=epochs, freeze_epochs=1,
                          lr=2e-3, max_images_per_class=150, bootstrap=500, early_stopping_patience=0)
    run_dir = out / "run"
    summary = train(cfg, run_dir, progress=progress, index=index)
    # predict on the test images, as a user would on a folder
    test_files = [Path(index.root) / k for k, s in json.loads((run_dir / "split.json").read_text())["sides"].items()
                  if s == "test"][:64]
    preds, errors = Predictor.load(run_dir / "model.pt").predict_paths(test_files or collect_images(index.root)[0])
    write_predictions(preds, errors, run_dir / "predictions_demo.json")
    summary["demo_predictions"] = str(run_dir / "predictions_demo.json")
    summary["report"] = str(run_dir / "test" / "report.html")
    return summary
