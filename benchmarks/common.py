"""Shared by the benchmark scripts: train one named run (skipped if its results exist) and return
its test metrics, with wall time added."""
import json
import time
from pathlib import Path

from leukodx.config import TrainConfig
from leukodx.train.run import train

ROOT = Path(__file__).resolve().parents[1]


def metrics_path(group: str, name: str) -> Path:
    """Where a run's test metrics land; the run counts as done once this file exists."""
    return ROOT / "runs" / group / name / "test" / "metrics.json"


def run(group: str, name: str, **cfg) -> dict:
    out, done = ROOT / "runs" / group / name, metrics_path(group, name)
    if not done.is_file():
        t = time.perf_counter()
        train(TrainConfig(**cfg), out, progress=False)
        m = json.loads(done.read_text())
        m["wall_minutes"] = round((time.perf_counter() - t) / 60, 2)
        done.write_text(json.dumps(m, indent=1))
        print(f"{group}/{name}: acc {m['accuracy']:.4f} in {m['wall_minutes']} min", flush=True)
    return json.loads(done.read_text())


def tree_metrics(group: str, name: str) -> dict:
    """The XGBoost-head evaluation of a run trained with head: xgboost."""
    return json.loads((ROOT / "runs" / group / name / "xgboost" / "test" / "metrics.json").read_text())
