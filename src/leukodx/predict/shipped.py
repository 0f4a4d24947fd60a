"""Where the shipped models live, and how a --model argument becomes a model file path."""
from __future__ import annotations

from pathlib import Path

from leukodx.errors import LeukodxError

SHIPPED = {"all": "all_severity.pt", "wbc": "wbc_type.pt", "smear": "smear_detector.pt"}  # smear: the field detector


def shipped_model(name: str, suffix: str = ".pt") -> Path:
    return (Path(__file__).resolve().parents[1] / "shipped" / SHIPPED[name]).with_suffix(suffix)


FILE_NAMES = {Path(f).stem: k for k, f in SHIPPED.items()}  # the names on the model cards: wbc_type -> wbc


def resolve_model(spec: str, suffix: str = ".pt") -> Path:
    """'all' / 'wbc' / 'smear' (or the shipped files' own names, all_severity / wbc_type / smear_detector, where no
    file or folder of that name is here) -> the shipped file (.pt, or its .onnx export); anything else is a model
    file or run folder, which must exist."""
    name = spec if spec in SHIPPED else None if Path(spec).exists() else FILE_NAMES.get(spec)
    if name:
        p = shipped_model(name, suffix)
        if not p.is_file():
            raise LeukodxError(f"the shipped '{spec}' model is not in this install ({p}); pass a model file or run folder")
        return p
    if not Path(spec).exists():
        raise LeukodxError(f"{spec}: no such model file or run folder (the shipped models: "
                           f"{', '.join(f'{k} ({Path(f).stem})' for k, f in SHIPPED.items())})")
    return Path(spec)
