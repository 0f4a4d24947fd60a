"""Per-epoch log of a run (Lightning's CSVLogger -> FOLDER/logs/metrics.csv) that survives a resume.

CSVLogger deletes metrics.csv when it opens a log folder that is not empty, so a resumed run would
lose the epochs before the interruption. `csv_logger` puts them back and keeps appending after them.
"""
from __future__ import annotations

from pathlib import Path


def csv_logger(folder: str | Path, resume: bool = False):
    from lightning.pytorch.loggers import CSVLogger

    path = Path(folder) / "logs" / "metrics.csv"
    earlier = path.read_text() if resume and path.is_file() else ""
    logger = CSVLogger(folder, name="logs", version="")
    if earlier.strip():
        writer = logger.experiment  # opening the folder deletes metrics.csv
        path.write_text(earlier)
        writer.metrics_keys = earlier.splitlines()[0].split(",")  # new rows append under the same header
    return logger
