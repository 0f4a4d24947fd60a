"""One way to list the files under a folder: follows symbolic links (a linked class folder counts),
never loops (each real folder is entered once), and reports every entry it leaves out and why:
hidden names, broken links, FIFOs / sockets / devices, folders it cannot read, link loops."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def walk_files(root: str | Path, seen: set | None = None) -> tuple[list[Path], list[dict]]:
    """(regular files under root, sorted; skipped entries as {'path', 'error'}). `seen` (real paths of
    folders already listed) can be shared between walks so no folder is listed twice."""
    root = Path(root)
    files, skipped = [], []
    seen = set() if seen is None else seen

    def visit(folder: Path) -> None:
        real = os.path.realpath(folder)
        if real in seen:
            skipped.append({"path": str(folder), "error": "skipped: link to a folder already listed (loop)"})
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            skipped.append({"path": str(folder), "error": f"skipped: cannot read folder ({e.strerror or e})"})
            return
        for e in entries:
            p = Path(e.path)
            if e.name.startswith("."):
                skipped.append({"path": str(p), "error": "skipped: hidden name"})
                continue
            try:
                st = os.stat(p)  # follows links
            except OSError:
                skipped.append({"path": str(p), "error": "skipped: broken symbolic link" if e.is_symlink()
                                else "skipped: cannot read entry"})
                continue
            if stat.S_ISDIR(st.st_mode):
                visit(p)
            elif stat.S_ISREG(st.st_mode):
                files.append(p)
            else:
                skipped.append({"path": str(p), "error": "skipped: not a regular file (FIFO, socket or device)"})

    visit(root)
    return files, skipped


def derived_name(i: int, path: str | Path, limit: int = 60) -> str:
    """`00012_<stem>` for output files made from an input file, short enough for any file system:
    long or undecodable stems are cut and given a hash so names stay unique."""
    stem = Path(str(path)).stem
    safe = stem.encode("utf-8", "replace").decode("utf-8", "replace")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in safe)
    if len(safe) > limit or safe != stem:
        safe = safe[:limit] + "-" + hashlib.sha256(os.fsencode(str(path))).hexdigest()[:8]
    return f"{i:05d}_{safe}"
