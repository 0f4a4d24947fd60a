"""Shared by the benchmark scripts: train one named run and return its test metrics, with wall time
added. A run is reused only when its key (a hash of its config and of leukodx's source code) matches
the one it was made with; a stale run is moved aside to NAME.stale and made again."""
import hashlib
import json
import shutil
import time
from pathlib import Path

from leukodx.config import TrainConfig
from leukodx.train.run import train

ROOT = Path(__file__).resolve().parents[1]


def code_version() -> str:
    """sha256 over leukodx's Python source (paths and contents)."""
    h = hashlib.sha256()
    for p in sorted((ROOT / "src" / "leukodx").rglob("*.py")):
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def run_key(cfg: dict) -> str:
    blob = json.dumps({"config": TrainConfig(**cfg).to_dict(), "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def metrics_path(group: str, name: str) -> Path:
    return ROOT / "runs" / group / name / "test" / "metrics.json"


def is_done(group: str, name: str, cfg: dict) -> bool:
    key = ROOT / "runs" / group / name / "run_key.txt"
    return metrics_path(group, name).is_file() and key.is_file() and key.read_text().strip() == run_key(cfg)


def run(group: str, name: str, **cfg) -> dict:
    out, done = ROOT / "runs" / group / name, metrics_path(group, name)
    if not is_done(group, name, cfg):
        if out.exists():
            print(f"{group}/{name}: stale (config or code changed) -> {out.name}.stale, training again", flush=True)
            shutil.rmtree(out.with_name(out.name + ".stale"), ignore_errors=True)
            out.rename(out.with_name(out.name + ".stale"))
        t = time.perf_counter()
        train(TrainConfig(**cfg), out, progress=False)
        m = json.loads(done.read_text())
        m["wall_minutes"] = round((time.perf_counter() - t) / 60, 2)
        m["run_key"] = run_key(cfg)
        done.write_text(json.dumps(m, indent=1))
        (out / "run_key.txt").write_text(m["run_key"] + "\n")
        print(f"{group}/{name}: acc {m['accuracy']:.4f} in {m['wall_minutes']} min", flush=True)
    return json.loads(done.read_text())


def tree_metrics(group: str, name: str) -> dict:
    """The XGBoost-head evaluation of a run trained with head: xgboost."""
    return json.loads((ROOT / "runs" / group / name / "xgboost" / "test" / "metrics.json").read_text())
