"""Integration: synthetic data -> train -> evaluate -> predict, through the CLI as users do."""
import csv
import json

import pytest

from leukodx.cli import main
from leukodx.config import TrainConfig
from leukodx.data.synthetic import generate
from leukodx.errors import ConfigError
from leukodx.models.artifact import ModelBundle
from leukodx.train.run import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate(root / "data", n_per_class=40, size=64, seed=0, per_slide=5)
    cfg = TrainConfig(data=str(root / "data" / "manifest.csv"), model="efficientnet_lite0", image_size=64, epochs=3,
                      freeze_epochs=1, lr=1e-3, use_hashes=False, bootstrap=100, early_stopping_patience=0,
                      workers=1,  # batches augmented in a DataLoader process, as on a GPU machine
                      refer_no_cell=0.05)  # and the no-white-cell probe fitted on the validation side
    summary = train(cfg, root / "run", progress=False)
    return root, summary


def test_run_folder_has_everything(trained_run):
    root, _s = trained_run
    run = root / "run"
    for f in ("config.yaml", "environment.json", "split.json", "model.pt", "logs/metrics.csv", "test/metrics.json", "test/report.html",
              "checkpoints/last.ckpt", "train_summary.json"):
        assert (run / f).is_file(), f
    m = json.loads((run / "test" / "metrics.json").read_text())
    for k in ("accuracy", "macro_f1", "mcc", "roc_auc", "ci95", "calibration", "referral", "confusion_matrix"):
        assert k in m
    assert m["accuracy"] > 0.5  # 4 classes: well above chance after 3 short epochs
    env = json.loads((run / "environment.json").read_text())
    assert m["environment"] == env["key"] and env["packages"]["torch"].startswith("2.")
    from leukodx.evaluate.model_card import write_model_card
    card = write_model_card(run, run / "card.md", "synthetic").read_text()
    assert f"environment {env['key']}" in card
    probe = m["referral"]["cell_probe"]  # fitted beside the thresholds, named in the card
    assert probe["n_with_cell"] == probe["n_without_cell"] > 0 and probe["flagged_without_cell_out_of_fold"] > 0.5
    assert "no-white-cell probe" in card and ModelBundle.load(run / "model.pt").cell_probe is not None
    assert "weight soup" not in card
    (run / "soup.json").write_text(json.dumps({"models": ["a.pt", "b.pt"], "bn_refit": True}))  # benchmarks/weight_soup.py
    souped = write_model_card(run, run / "card.md", "synthetic").read_text()
    (run / "soup.json").unlink()
    assert "A weight soup: the uniform average of `a.pt`, `b.pt`, batch-norm statistics re-estimated" in souped
    html = (run / "test" / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 5  # confusion, ROC, reliability, learning curves, LayerCAM
    assert "LayerCAM" in html  # the default explanation (explain.DEFAULT_METHOD)
    assert TrainConfig.load(run / "config.yaml").epochs == 3


def test_predict_folder_with_bad_files(trained_run, bad_files, capsys):
    root, _ = trained_run
    folder, bad = bad_files
    out = folder.parent / "preds.json"
    assert main(["predict", str(folder), "--model", str(root / "run"), "--out", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert {e["path"].rsplit("/", 1)[1] for e in res["errors"]} == bad
    good = {p["path"].rsplit("/", 1)[1] for p in res["predictions"]}
    assert good == {"good.jpg", "good2.png", "gray.png", "rgba.png", "cmyk.jpg", "sixteen.png", "exif.jpg"}
    for p in res["predictions"]:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4 and isinstance(p["refer"], bool)
        assert p["probability"] == max(p["probabilities"].values())
    err = capsys.readouterr().err
    assert "truncated.jpg" in err and "Traceback" not in err


def test_predict_csv_and_evaluate_cli(trained_run, tmp_path):
    root, _ = trained_run
    img = next((root / "data").rglob("*.png"))
    assert main(["predict", str(img), "--model", str(root / "run" / "model.pt"), "--out", str(tmp_path / "p.csv")]) == 0
    head = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert head.startswith("path,label,probability,refer")
    assert main(["evaluate", str(root / "run"), "--out", str(tmp_path / "ev"), "--bootstrap", "50"]) == 0
    assert (tmp_path / "ev" / "report.html").is_file()


def test_evaluate_shifts_and_external_set(trained_run, tmp_path, capsys):
    """Robustness rows for named shifts on the test split, and an 'external' folder whose classes
    only partly match the model's: matched by name, the rest left out and said so."""
    import shutil

    from PIL import Image
    root, _ = trained_run
    out = tmp_path / "rob"
    assert main(["evaluate", str(root / "run"), "--shifts", "none,grayscale,scale_0.5", "--out", str(out),
                 "--bootstrap", "50"]) == 0
    res = json.loads((out / "robustness.json").read_text())
    assert [r["shift"] for r in res["rows"]] == ["none", "grayscale", "scale_0.5"]
    for r in res["rows"]:
        assert 0 <= r["ci95"][0] <= r["accuracy"] <= r["ci95"][1] <= 1 and 0 <= r["baseline_accuracy"] <= 1
    assert "| grayscale |" in (out / "robustness.md").read_text()
    ext = tmp_path / "ext"
    classes = json.loads((root / "run" / "test" / "metrics.json").read_text())["classes"]
    for c in classes[:2] + ["smudge"]:
        (ext / c).mkdir(parents=True)
        for i, src in enumerate(sorted((root / "data").rglob("*.png"))[:3]):
            Image.open(src).save(ext / c / f"{i}.png")
    assert main(["evaluate", str(root / "run"), "--data", str(ext), "--all-images", "--out", str(tmp_path / "ev"),
                 "--bootstrap", "20"]) == 0
    assert "smudge (3 images)" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n"] == 6
    shutil.rmtree(ext / "smudge")
    assert main(["evaluate", str(root / "run"), "--shifts", "sepia"]) == 2  # unknown shift: one-line error


def test_resume_continues_from_checkpoint(trained_run, tmp_path):
    import shutil
    root, _ = trained_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "model.pt").unlink()  # as if interrupted before the end
    cfg = TrainConfig.load(run / "config.yaml", epochs=4, seed=3)  # a run seed other than its split's
    cfg.save(run / "config.yaml")
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "model.pt").is_file()
    m = json.loads((run / "test" / "metrics.json").read_text())
    assert m["epochs_run"] == 4 and m["split"].startswith("StratifiedGroupKFold seed 0;")  # the split's seed
    with open(run / "logs" / "metrics.csv") as f:
        epochs = {int(r["epoch"]) for r in csv.DictReader(f)}
    assert epochs == {0, 1, 2, 3}  # the epochs before the interruption are still in the log


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert main(["predict", str(tmp_path / "nothing"), "--model", str(tmp_path)]) == 2
    (tmp_path / "bad.yaml").write_text("epochs: -3\n")
    assert main(["train", "--config", str(tmp_path / "bad.yaml")]) == 2
    (tmp_path / "bad2.yaml").write_text("epochz: 3\n")
    assert main(["train", "--config", str(tmp_path / "bad2.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("leukodx: error:") == 4
    assert "epochz" in err and "epochs" in err
    with pytest.raises(ConfigError):
        TrainConfig(lr="fast")
