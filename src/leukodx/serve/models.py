"""The models the web app offers: the shipped ones, files given to `leukodx serve --model NAME=PATH`,
and models adapted to a lab from a case's reviewed cells (kept in DATA_DIR/models, found again at start)."""
from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

from fastapi import HTTPException

from leukodx.errors import LeukodxError
from leukodx.heads.expected import FIVE_PART

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,19}$")  # fits the database's model column (20 characters)
SHIPPED = {"wbc": "White-cell type (8 PBC classes)", "all": "ALL severity (Benign / Early / Pre / Pro)"}


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise LeukodxError(f"model name {name!r}: use 1-20 lower-case letters, digits, '-' or '_'")
    return name


class Models:
    """Name -> model file; one Predictor per name, loaded on first use; calls are serialised (one CPU pool)."""

    def __init__(self, extra: dict[str, Path] | None = None, folder: Path | None = None):
        from leukodx.predict.shipped import resolve_model

        self.shipped = {k: resolve_model(k) for k in SHIPPED}
        self.paths = dict(self.shipped)
        found = sorted(folder.glob("*.pt")) if folder and folder.is_dir() else []
        self.paths.update({p.stem: p for p in found if NAME.fullmatch(p.stem)})
        for name, path in (extra or {}).items():
            self.add(name, Path(path))
        self._cache, self.lock = {}, threading.Lock()

    def add(self, name: str, path: Path) -> None:
        self.paths[check_name(name)] = path

    def get(self, name: str):
        if name not in self.paths:
            raise HTTPException(422, f"unknown model '{name}' (one of {', '.join(self.paths)})")
        if name not in self._cache:
            from leukodx.predict.predictor import Predictor
            p = self.paths[name]
            self._cache[name] = (Predictor.load(p), hashlib.sha256(p.read_bytes()).hexdigest())
        return self._cache[name]

    def describe(self, name: str) -> dict:
        """What the upload page shows: a label, and whether the five-part differential box applies."""
        predictor = self.get(name)[0]
        adapted = predictor.bundle.info.get("adapted")
        if self.paths[name] == self.shipped.get(name):
            label = SHIPPED[name]
        else:
            label = f"{name}: " + (f"adapted on {adapted['n_images']} cells from {adapted['data']}" if adapted
                                   else f"{len(predictor.classes)} classes ({self.paths[name].name})")
        return {"name": name, "label": label, "five_part": set(FIVE_PART.split(",")) <= set(predictor.classes)}
