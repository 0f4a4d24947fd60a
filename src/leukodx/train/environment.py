"""What a run was made with, saved beside it as RUN/environment.json: the machine, the CPU kernels
PyTorch picked, and the versions of the libraries that decide its numbers. Runs of one config can
only be expected to agree where these agree; the seed tables record each seed's key (issue 17)."""
from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "timm", "numpy", "scipy", "pillow", "scikit-learn",
            "scikit-image", "torchstain", "xgboost-cpu", "onnxruntime", "efficientnet-lite-pytorch")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """This process's machine, threads and library versions."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "gpu": gpu,
            "packages": {p: _version(p) for p in PACKAGES}}


def environment_key(env: dict) -> str:
    """12 hex digits naming an environment: equal keys, equal CPU, threads and library versions (the
    operating system's own version is recorded but left out of the key)."""
    kept = {k: v for k, v in env.items() if k != "platform"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def save_environment(run_dir: Path) -> str:
    """Write RUN/environment.json (with its key) and return the key. A run resumed elsewhere keeps the
    keys it was started under in "earlier"."""
    env, path = environment(), Path(run_dir) / "environment.json"
    key = environment_key(env)
    try:
        old = json.loads(path.read_text())
        earlier = [k for k in old.get("earlier", []) + [old["key"]] if k != key]
    except (OSError, ValueError, KeyError, TypeError):
        earlier = []
    tmp = path.with_suffix(".json.tmp")  # never a half-written file
    tmp.write_text(json.dumps({"key": key, **env, **({"earlier": earlier} if earlier else {})}, indent=1) + "\n")
    tmp.replace(path)
    return key
