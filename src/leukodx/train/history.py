"""Per-epoch log of a run (Lightning's CSVLogger -> FOLDER/logs/metrics.csv) that survives a resume.

CSVLogger deletes metrics.csv when it opens a log folder that is not empty, so a resumed run would
lose the epochs before the interruption. `csv_logger` puts them back and keeps appending after them.
"""
from __future__ import annotations

from pathlib import Path


def csv_logger(folder: str | Path, resume: bool = False, through_epoch: int | None = None):
    """`through_epoch`: on resume, keep only rows of epochs up to the checkpoint's (later rows belong
    to the epoch that was interrupted and will be run again)."""
    from lightning.pytorch.loggers import CSVLogger

    path = Path(folder) / "logs" / "metrics.csv"
    earlier = path.read_text() if resume and path.is_file() else ""
    if earlier.strip() and through_epoch is not None:
        lines = earlier.splitlines()
        col = lines[0].split(",").index("epoch") if "epoch" in lines[0].split(",") else None
        if col is not None:
            keep = [ln for ln in lines[1:] if _epoch(ln, col) is not None and _epoch(ln, col) <= through_epoch]
            earlier = "\n".join([lines[0]] + keep) + "\n"
    logger = CSVLogger(folder, name="logs", version="")
    if earlier.strip():
        writer = logger.experiment  # opening the folder deletes metrics.csv
        path.write_text(earlier)
        writer.metrics_keys = earlier.splitlines()[0].split(",")  # new rows append under the same header
    return logger


def _epoch(line: str, col: int) -> int | None:
    try:
        return int(float(line.split(",")[col]))
    except (IndexError, ValueError):
        return None
