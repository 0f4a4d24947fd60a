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

MAX_UNPACKED_BYTES = 20 * 2**30  # larger than any public blood-smear set
MAX_RATIO = 100                  # images barely compress; a zip bomb compresses 1000x and more
MAX_MEMBERS = 2_000_000


def safe_extract(archive: Path, dest: Path, max_bytes: int = MAX_UNPACKED_BYTES, max_ratio: float = MAX_RATIO) -> None:
    """Unzip with limits: no path outside dest, no member or total beyond the size budget, no
    member whose expansion ratio gives a zip bomb away. Sizes are counted while writing (headers
    can lie)."""
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        if len(infos) > MAX_MEMBERS:
            raise LeukodxError(f"{archive.name}: {len(infos):,} members (limit {MAX_MEMBERS:,})")
        total = 0
        for info in infos:
            if info.filename.startswith("/") or ".." in Path(info.filename).parts:
                raise LeukodxError(f"{archive.name}: unsafe path in archive: {info.filename}")
            if info.compress_size and info.file_size / info.compress_size > max_ratio and info.file_size > 2**20:
                raise LeukodxError(f"{archive.name}: {info.filename} expands {info.file_size / info.compress_size:.0f}x "
                                   f"(limit {max_ratio:.0f}x): refused as a zip bomb")
            target = dest / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(2**20):
                    total += len(chunk)
                    if total > max_bytes:
                        raise LeukodxError(f"{archive.name}: unpacks to more than {max_bytes / 2**30:.0f} GB; refused")
                    out.write(chunk)


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
        safe_extract(archive, unpack)
        src = unpack / info.get("subdir", "")
        if not src.is_dir():
            raise LeukodxError(f"download of '{name}': expected folder {info.get('subdir')} not in archive")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))
    return dest
