"""Web app under load (issue 16): one-cell latency (upload -> JSON, then the Grad-CAM overlay), 50
concurrent uploads, and a SIGKILL of the server mid-load: every acknowledged upload must be there
after a restart. Starts `leukodx serve` as a real process on a temporary data folder.
Writes results/serve_load.{json,md}.
    .venv/bin/python benchmarks/serve_load.py
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from leukodx.data.recipes import load_dataset

cells = [Path(r.path) for r in load_dataset("pbc").records[::200][:60]]
data_dir = Path(tempfile.mkdtemp())


def start():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "leukodx.cli", "serve", "--port", str(port), "--data-dir",
                             str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def upload(url, path, model="wbc"):
    t0 = time.perf_counter()
    r = httpx.post(url + "/api/v1/predict", files={"file": (path.name, path.read_bytes())}, data={"model": model},
                   timeout=120)
    return r, time.perf_counter() - t0


proc, url = start()
upload(url, cells[0])  # load the model once
single, with_cam = [], []
for p in cells[1:21]:
    r, dt = upload(url, p)
    t0 = time.perf_counter()
    httpx.get(url + r.json()["overlay"], timeout=60).raise_for_status()
    single.append(dt)
    with_cam.append(dt + time.perf_counter() - t0)
with ThreadPoolExecutor(50) as ex:
    t0 = time.perf_counter()
    results = list(ex.map(lambda p: upload(url, p), cells[:50]))
    burst_s = time.perf_counter() - t0
errors = sum(r.status_code != 200 for r, _ in results)
ids = {r.json()["id"] for r, _ in results if r.status_code == 200}
stored = {i for i in ids if httpx.get(f"{url}/api/v1/images/{i}").status_code == 200}

# SIGKILL mid-load: acknowledged = got a 200 with an id before the kill
acked = []


def upload_until_killed(p):
    try:
        r, _ = upload(url, p)
        if r.status_code == 200:
            acked.append(r.json()["id"])
    except httpx.HTTPError:
        pass


with ThreadPoolExecutor(8) as ex:
    futs = [ex.submit(upload_until_killed, p) for p in cells * 2]
    while len(acked) < 20:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    for f in futs:
        f.result()
proc.wait()
proc, url = start()
lost = [i for i in acked if httpx.get(f"{url}/api/v1/images/{i}").status_code != 200]
proc.send_signal(signal.SIGTERM)
proc.wait()

res = {"one_cell_upload_to_json_s": {"p50": float(np.percentile(single, 50)), "p95": float(np.percentile(single, 95))},
       "one_cell_with_gradcam_s": {"p50": float(np.percentile(with_cam, 50)), "p95": float(np.percentile(with_cam, 95))},
       "concurrent_uploads": 50, "concurrent_errors": errors, "concurrent_lost": len(ids) - len(stored),
       "concurrent_wall_s": burst_s, "killed_mid_load_acknowledged": len(acked), "killed_mid_load_lost": len(lost),
       "model": "wbc (shipped, torch backend)", "hardware": f"{os.cpu_count()} CPU cores, no GPU",
       "images": f"{len(cells)} PBC cells (every 200th image of the recipe)"}
out = Path("results/serve_load")
out.with_suffix(".json").write_text(json.dumps(res, indent=1))
md = ["# Web app under load (`leukodx serve`)", "", ("- Command: `.venv/bin/python benchmarks/serve_load.py`; "
      f"{res['hardware']}; {res['model']}; {res['images']}."), "",
      "| measure | value | target |", "|---|---|---|",
      (f"| one cell, upload -> JSON, p50 / p95 | {res['one_cell_upload_to_json_s']['p50']:.3f} / "
      f"{res['one_cell_upload_to_json_s']['p95']:.3f} s | |"),
      (f"| one cell incl. Grad-CAM overlay, p50 / p95 | {res['one_cell_with_gradcam_s']['p50']:.3f} / "
      f"{res['one_cell_with_gradcam_s']['p95']:.3f} s | p95 <= 1.0 s |"),
      (f"| 50 concurrent uploads: errors / lost records | {errors} / {res['concurrent_lost']} "
      f"({burst_s:.1f} s wall) | 0 / 0 |"),
      f"| SIGKILL mid-load: acknowledged / lost after restart | {len(acked)} / {len(lost)} | lost 0 |"]
out.with_suffix(".md").write_text("\n".join(md) + "\n")
print("\n".join(md))
