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
    """Name -> model file; one Predictor per name, loaded on first use; predictions are serialised by `lock`
    (one CPU pool). Models adapted here live in `folder`; a name being adapted is reserved meanwhile."""

    def __init__(self, extra: dict[str, Path] | None = None, folder: Path | None = None):
        from leukodx.predict.shipped import resolve_model

        self.shipped = {k: resolve_model(k) for k in SHIPPED}
        self.paths = dict(self.shipped)
        self.folder = folder
        found = sorted(folder.glob("*.pt")) if folder and folder.is_dir() else []
        self.paths.update({p.stem: p for p in found if NAME.fullmatch(p.stem)})
        for name, path in (extra or {}).items():
            self.add(name, Path(path))
        self._cache, self.lock, self.pending = {}, threading.Lock(), set()

    def add(self, name: str, path: Path) -> None:
        self.paths[check_name(name)] = path

    def adapted_path(self, name: str) -> Path:
        if self.folder is None:
            raise HTTPException(409, "this server keeps no adapted models (no data folder)")
        return self.folder / f"{check_name(name)}.pt"

    def adapted_here(self, name: str) -> bool:
        return self.folder is not None and self.paths.get(name) == self.adapted_path(name)

    def reserve(self, name: str) -> Path:
        """Take `name` for a model about to be adapted (a 409 if a model has it or is being made with it);
        `finish` ends the reservation. The adaptation itself runs outside the lock."""
        with self.lock:
            path = self.adapted_path(name)
            if name in self.paths or name in self.pending or path.exists():
                raise HTTPException(409, f"a model called '{name}' exists; choose another name")
            self.pending.add(name)
            return path

    def finish(self, name: str, made: bool) -> None:
        with self.lock:
            self.pending.discard(name)
            if made:
                self.paths[name] = self.adapted_path(name)

    def remove(self, name: str, in_use) -> None:
        """Delete an adapted model's file and card. Refused (409) for shipped models and files given at start,
        and while `in_use(name)` names cases or images that used it: their answers must stay traceable."""
        with self.lock:
            if name not in self.paths:
                raise HTTPException(404, f"no model called '{name}'")
            if not self.adapted_here(name):
                raise HTTPException(409, f"'{name}' was not adapted here (shipped, or given at start): not deleted")
            users = in_use(name)
            if users:
                raise HTTPException(409, f"'{name}' answered {users}; it is kept so that those answers stay traceable")
            path = self.paths.pop(name)
            self._cache.pop(name, None)
            path.with_suffix(".md").unlink(missing_ok=True)
            path.unlink()

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
        return {"name": name, "label": label, "five_part": set(FIVE_PART.split(",")) <= set(predictor.classes),
                "adapted_here": self.adapted_here(name)}
