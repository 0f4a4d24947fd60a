"""Fetch public data sets where a plain download exists (it cannot run on an offline machine)."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from leukodx.data.recipes import DOWNLOADS
from leukodx.errors import LeukodxError


def download_dataset(name: str, dest: str | Path, url: str | None = None, sha256: str | None = None) -> Path:
    """Download and unpack data set `name` into dest/<name>; returns the folder to pass as --data.

    `url` overrides the recipe's address (a mirror, or file:// for a local copy).
    """
    info = DOWNLOADS.get(name)
    if info is None:
        raise LeukodxError(f"no download known for '{name}'; known: {', '.join(DOWNLOADS)}")
    if url is None and "manual" in info:
        raise LeukodxError(f"'{name}' cannot be downloaded automatically: {info['manual']}")
    url = url or info["url"]
    dest = Path(dest).expanduser().resolve() / name
    if dest.exists() and any(dest.iterdir()):
        raise LeukodxError(f"{dest}: already exists and is not empty; remove it or pick another --dest")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "download.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(archive, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise LeukodxError(f"download of '{name}' from {url} failed: {e}") from None
        if sha256:
            got = hashlib.sha256(archive.read_bytes()).hexdigest()
            if got != sha256:
                raise LeukodxError(f"download of '{name}' has sha256 {got}, expected {sha256}")
        if not zipfile.is_zipfile(archive):
            raise LeukodxError(f"download of '{name}' from {url} is not a zip archive")
        unpack = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():  # refuse paths that escape the folder
                if member.startswith("/") or ".." in Path(member).parts:
                    raise LeukodxError(f"download of '{name}': unsafe path in archive: {member}")
            z.extractall(unpack)
        src = unpack / info.get("subdir", "")
        if not src.is_dir():
            raise LeukodxError(f"download of '{name}': expected folder {info.get('subdir')} not in archive")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))
    return dest
