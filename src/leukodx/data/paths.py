"""Where leukodx looks for the shared data and keeps its caches."""
from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """$LEUKODX_SHARED_DATA, else shared/data beside the current folder or beside one of its parents
    (so scripts run from a subfolder of the checkout find it too)."""
    env = os.environ.get("LEUKODX_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    cwd = Path.cwd()
    for p in (cwd, *cwd.parents):
        if (p.parent / "shared" / "data").is_dir():
            return p.parent / "shared" / "data"
    return cwd.parent / "shared" / "data"


def cache_dir() -> Path:
    d = Path(os.environ.get("LEUKODX_CACHE", Path.home() / ".cache" / "leukodx"))
    d.mkdir(parents=True, exist_ok=True)
    return d
