"""Where leukodx looks for the shared data and keeps its caches."""
from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """$LEUKODX_SHARED_DATA, else ../shared/data next to the current folder."""
    env = os.environ.get("LEUKODX_SHARED_DATA")
    return Path(env).expanduser() if env else (Path.cwd().parent / "shared" / "data")


def cache_dir() -> Path:
    d = Path(os.environ.get("LEUKODX_CACHE", Path.home() / ".cache" / "leukodx"))
    d.mkdir(parents=True, exist_ok=True)
    return d
