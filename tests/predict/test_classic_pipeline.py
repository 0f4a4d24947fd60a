"""Classic CNN pipeline (Sudhakar et al.): five-class folder data, Otsu masking, Gaussian +
grayscale preprocessing, classic_cnn, and the mask / outline output of predict."""
import json

import numpy as np
from PIL import Image

from leukodx.cli import main
from leukodx.config import TrainConfig
from leukodx.data.dataset import from_folder
from leukodx.data.images import load_image
from leukodx.data.synthetic import generate
from leukodx.models.artifact import ModelBundle
from leukodx.train.run import train
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

FIVE = ["ALL", "AML", "CLL", "CML", "healthy"]


def test_mask_background_whitens_everything_but_the_cell(tmp_path):
    idx = generate(tmp_path / "d", n_per_class=2, size=64, classes=FIVE)
    img = load_image(idx.records[0].path)
    plain = Preprocess(PreprocessConfig(64))(img).numpy()
    masked = Preprocess(PreprocessConfig(64, mask_background=True))(img).numpy()
    changed = (plain != masked).any(0)
    assert (masked[:, ~changed] == plain[:, ~changed]).all()
    white = (masked == 255).all(0)
    assert white[0, 0] and white[-1, -1] and 0.5 < white.mean() < 0.99
    gray = Preprocess(PreprocessConfig(64, gaussian_sigma=1.0, grayscale=True))(img).numpy()
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()


def test_five_class_folder_train_and_outlined_prediction(tmp_path):
    generate(tmp_path / "data", n_per_class=24, size=64, seed=1, per_slide=4, classes=FIVE)
    (tmp_path / "data" / "manifest.csv").unlink()  # a plain folder tree, as users bring it
    assert from_folder(tmp_path / "data").classes == FIVE
    cfg = TrainConfig(data=str(tmp_path / "data"), model="classic_cnn", pretrained=False, image_size=64,
                      mask_background=True, gaussian_sigma=1.0, grayscale=True, augment="none", epochs=2,
                      freeze_epochs=0, optimizer="adam", lr=1e-3, use_hashes=False, bootstrap=50,
                      early_stopping_patience=0)
    train(cfg, tmp_path / "run", progress=False)
    bundle = ModelBundle.load(tmp_path / "run")
    assert bundle.classes == FIVE and bundle.preprocess["mask_background"] and bundle.model_kwargs["img_size"] == 64

    sample = tmp_path / "sample"
    sample.mkdir()
    for c in ("ALL", "healthy"):
        src = min((tmp_path / "data" / c).iterdir())
        (sample / src.name).write_bytes(src.read_bytes())
    out = tmp_path / "outlines"
    assert main(["predict", str(sample), "--model", str(tmp_path / "run"), "--outline", str(out), "--quiet",
                 "--out", str(tmp_path / "p.json"), "--explain", str(tmp_path / "ex"), "--methods", "gradcam,ig"]) == 0
    assert len(list((tmp_path / "ex").glob("*_panel.png"))) == 2 and len(list((tmp_path / "ex").glob("*_ig.npy"))) == 2
    rows = json.loads((out / "outlines.json").read_text())
    preds = {p["path"]: p for p in json.loads((tmp_path / "p.json").read_text())["predictions"]}
    assert len(rows) == 2
    for r in rows:
        mask = np.array(Image.open(r["mask"])) > 0
        img = np.asarray(load_image(r["path"]).convert("L"), dtype=float)
        assert 0.01 < mask.mean() < 0.5 and img[mask].mean() < img[~mask].mean() - 30  # the dark cell
        outline = np.array(Image.open(r["outline"]).convert("RGB")).astype(int)
        drawn = np.abs(outline - np.array(load_image(r["path"]))).sum(-1) > 0
        assert drawn[mask].any() and r["abnormal"] == (preds[r["path"]]["label"] != "healthy")


def test_outlines_follow_the_model_s_mask(tmp_path, one_cell_field):
    from types import SimpleNamespace

    from leukodx.predict.outline import write_outlines

    f = tmp_path / "field.png"
    one_cell_field["image"].save(f)
    pred = SimpleNamespace(path=str(f), label="neutrophil", probability=0.9)
    cell, touching = one_cell_field["cell"], one_cell_field["touching"]
    whole = np.array(Image.open(write_outlines([pred], tmp_path / "w", keep_cytoplasm=True)[0]["mask"])) > 0
    otsu = np.array(Image.open(write_outlines([pred], tmp_path / "o")[0]["mask"])) > 0
    assert whole[cell].mean() > 0.9 and whole[touching & ~cell].mean() < 0.05
    assert otsu[touching & ~cell].mean() > 0.3
