"""Nothing vanishes without a word, odd file names never kill a finished run, a killed `predict --out`
loses nothing, and wrong config values fail at once with a clear message."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from leukodx.cli import main
from leukodx.config import TrainConfig
from leukodx.data.dataset import from_folder
from leukodx.errors import ConfigError
from leukodx.predict.results import collect_images
from tests.conftest import rgb


def odd_tree(tmp_path):
    real = tmp_path / "real" / "cellA"
    real.mkdir(parents=True)
    for i in range(3):
        rgb(i, 40).save(real / f"{i}.png")
    d = tmp_path / "data"
    (d / "cellB").mkdir(parents=True)
    rgb(9, 40).save(d / "cellB" / "b.png")
    os.symlink(real, d / "cellA")                      # a linked class folder
    os.symlink(tmp_path / "gone.png", d / "cellB" / "dangling.png")
    os.symlink(d, d / "cellB" / "loop")                 # a loop
    os.mkfifo(d / "cellB" / "pipe.png")
    (d / "cellB" / ".hidden.png").write_bytes(b"x")
    return d


def test_linked_folders_are_followed_and_every_skip_is_named(tmp_path):
    d = odd_tree(tmp_path)
    files, skipped = collect_images(d)
    assert sorted(f.name for f in files) == ["0.png", "1.png", "2.png", "b.png"]
    why = {os.path.basename(s["path"]): s["error"] for s in skipped}
    assert "broken symbolic link" in why["dangling.png"]
    assert "FIFO" in why["pipe.png"] and "hidden" in why[".hidden.png"] and "loop" in why["loop"]
    index = from_folder(d)
    assert len(index) == 4 and index.classes == ["cellA", "cellB"]
    assert {os.path.basename(s["path"]) for s in index.skipped} >= {"dangling.png", "pipe.png"}


def test_odd_file_names_never_crash_a_finished_run(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    rgb(1, 48).save(d / "plain.png")
    rgb(2, 48).save(os.path.join(os.fsencode(d), b"caf\xe9-\xff.png"))  # not UTF-8
    rgb(3, 48).save(d / ("x" * 240 + ".png"))                             # legal, long
    assert main(["predict", str(d), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    assert len((tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()) == 4
    assert main(["predict", str(d), "--format", "csv", "--quiet"]) == 0
    assert main(["predict", str(d), "--outline", str(tmp_path / "o"), "--out", str(tmp_path / "p.json"),
                 "--quiet"]) == 0
    assert len(list((tmp_path / "o").glob("*_outline.png"))) == 3
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.partial.jsonl"))


def test_killed_predict_out_keeps_finished_rows_and_resumes(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(600):
        rgb(i, 40).save(d / f"{i:04d}.png")
    out = tmp_path / "p.json"
    journal = tmp_path / "p.json.partial.jsonl"
    cmd = [sys.executable, "-m", "leukodx.cli", "predict", str(d), "--model", "wbc", "--backend", "onnx", "--out", str(out),
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and proc.poll() is None:
        if journal.is_file() and len(journal.read_text().splitlines()) > 70:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.skip("the run finished before it could be killed")
    kept = len(journal.read_text().splitlines()) - 1
    assert kept >= 64 and not out.exists()
    # mark one finished row so the re-run shows it was reused, not redone
    lines = journal.read_text().splitlines()
    row = json.loads(lines[1])
    row["label"] = "from-the-first-run"
    lines[1] = json.dumps(row)
    journal.write_text("\n".join(lines) + "\n")
    assert subprocess.run(cmd, capture_output=True, check=False).returncode == 0
    res = json.loads(out.read_text())
    paths = [p["path"] for p in res["predictions"]]
    assert len(paths) == len(set(paths)) == 600 and not res["errors"]
    assert sum(p["label"] == "from-the-first-run" for p in res["predictions"]) == 1
    assert not journal.exists()


def test_config_values_are_checked_against_the_machine(tmp_path):
    assert TrainConfig(data="x", lr="1e-3").lr == 1e-3
    for bad in ({"devices": 999}, {"accelerator": "tpu"}, {"lr": "fast"}, {"lr": float("nan")}):
        with pytest.raises(ConfigError):
            TrainConfig(data="x", **bad)
    (tmp_path / "c.yaml").write_bytes(b"data: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        TrainConfig.load(tmp_path / "c.yaml")


def test_huge_or_non_finite_images_are_refused_or_cheap(tmp_path, monkeypatch):
    import resource

    import numpy as np
    from PIL import Image

    from leukodx.data.images import load_image
    from leukodx.errors import BadImageError
    Image.fromarray(np.zeros((7000, 7000), np.uint16)).save(tmp_path / "zeros16.png")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    img = load_image(tmp_path / "zeros16.png")
    assert img.size == (7000, 7000) and time.time() - t0 < 10
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grew_mb < 700, grew_mb  # was 1.5-2.3 GB
    a = np.ones((64, 64), np.float32)
    a[3, 3] = np.nan
    Image.fromarray(a, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(BadImageError, match="NaN"):
        load_image(tmp_path / "nan.tif")
    from leukodx.data import images
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 10 * 2**20)
    Image.new("RGB", (2000, 2000)).save(tmp_path / "big.png")  # 11.4 MB decoded
    with pytest.raises(BadImageError, match="too large to decode"):
        load_image(tmp_path / "big.png")


def test_manifest_rows_pointing_at_a_fifo_or_nothing_are_reported_not_hung(tmp_path, capsys):
    for i in range(6):
        rgb(i, 40).save(tmp_path / f"{i}.png")
    os.mkfifo(tmp_path / "pipe.png")
    rows = "".join(f"{i}.png,{'ab'[i % 2]}\n" for i in range(6)) + "pipe.png,a\nmissing.png,b\n"
    (tmp_path / "m.csv").write_text("path,label\n" + rows)
    assert main(["data", "audit", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert "pipe.png: not a regular file" in out and "missing.png: file not found" in out


def test_model_kwargs_are_checked():
    from leukodx.errors import LeukodxError
    from leukodx.models import create_model
    with pytest.raises(ConfigError, match="model_kwargs"):
        TrainConfig(data="x", model_kwargs={"drop_rate": {"nested": 1}})
    for name in ("efficientnet_lite0", "ddrnet"):
        with pytest.raises(LeukodxError, match="does not take"):
            create_model(name, 3, bogus_argument=1)


def test_prepared_ahead_results_keep_file_order_and_a_failing_network_stops_cleanly(bad_files):
    """Files are prepared on a thread ahead of the network: predictions still come in the order of the
    paths, every bad file is listed, and an error in the network propagates with no thread left behind."""
    import threading

    import numpy as np

    from leukodx.predict.results import predict_batches

    folder, bad = bad_files
    paths = sorted(folder.iterdir()) * 3  # more files than two batches in flight

    def scores(batch):
        return batch.reshape(len(batch), -1)[:, :2].astype(float), np.zeros(len(batch)), np.zeros(len(batch), bool)

    for overlap in (True, False):  # prepared on a thread ahead, or between batches: the same rows
        seen = []
        preds, errors = predict_batches(paths, lambda im: np.asarray(im.convert("RGB").resize((8, 8))), scores,
                                        lambda path, p, d, problem, gray: (path, problem), batch_size=4,
                                        on_row=seen.append, overlap=overlap)
        good = [str(p) for p in paths if p.name not in bad]
        assert [p for p, _ in preds] == good
        assert [e["path"] for e in errors] == [str(p) for p in paths if p.name in bad]
        assert len(seen) == len(paths) and all(pr is None or isinstance(pr, str) for _, pr in preds)

    def broken(batch):
        raise RuntimeError("network failed")

    with pytest.raises(RuntimeError, match="network failed"):
        predict_batches(paths, lambda im: np.asarray(im.convert("RGB").resize((8, 8))), broken, None, batch_size=4)
    assert not [t for t in threading.enumerate() if t.name.startswith("leukodx-prepare")]
