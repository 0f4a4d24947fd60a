"""SIGKILL during training: a resume starts after the last finished epoch, never repeats one, and the
metrics log has exactly one validation row per epoch."""
import csv
import signal
import subprocess
import sys
import time

import torch

from leukodx.config import TrainConfig
from leukodx.data.synthetic import generate


def _ckpt_epoch(path):
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - being written
        return -1


def test_killed_training_resumes_after_the_last_finished_epoch(tmp_path):
    generate(tmp_path / "data", n_per_class=16, size=48, seed=0, per_slide=4)
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="efficientnet_lite0", image_size=48,
                      epochs=5, freeze_epochs=0, use_hashes=False, bootstrap=10, early_stopping_patience=0,
                      batch_size=8)
    cfg.save(tmp_path / "c.yaml")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "leukodx.cli", "train", "--config", str(tmp_path / "c.yaml"), "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:
        if last.is_file() and _ckpt_epoch(last) >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    done = _ckpt_epoch(last)
    assert done >= 1 and not (run / "model.pt").exists()
    resumed = subprocess.run([sys.executable, "-m", "leukodx.cli", "train", "--resume", str(run)],
                             capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with open(run / "logs" / "metrics.csv") as f:
        val_epochs = [int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("val_loss")]
    assert sorted(val_epochs) == [0, 1, 2, 3, 4]  # one row per epoch: nothing repeated, nothing lost
    assert (run / "model.pt").is_file()
