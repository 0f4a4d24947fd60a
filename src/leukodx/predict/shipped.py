"""Where the shipped models live, and how a --model argument becomes a model file path."""
from __future__ import annotations

from pathlib import Path

from leukodx.errors import LeukodxError

SHIPPED = {"all": "all_severity.pt", "wbc": "wbc_type.pt", "smear": "smear_detector.pt"}  # smear: the field detector


def shipped_model(name: str, suffix: str = ".pt") -> Path:
    return (Path(__file__).resolve().parents[1] / "shipped" / SHIPPED[name]).with_suffix(suffix)


def resolve_model(spec: str, suffix: str = ".pt") -> Path:
    """'all' / 'wbc' -> the shipped file (.pt, or its .onnx export); anything else is a model file or run folder."""
    if spec in SHIPPED:
        p = shipped_model(spec, suffix)
        if not p.is_file():
            raise LeukodxError(f"the shipped '{spec}' model is not in this install ({p}); pass a model file or run folder")
        return p
    return Path(spec)
