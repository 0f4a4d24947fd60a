"""XIncept-ALL: fusion network, two-stage training with an XGBoost head, one artefact, explanations."""
import numpy as np
import pytest
import torch

from leukodx.config import TrainConfig
from leukodx.data.images import load_image
from leukodx.data.synthetic import generate
from leukodx.errors import LeukodxError
from leukodx.explain import Explainer
from leukodx.heads.xgboost_head import XGBoostHead
from leukodx.models import create_model
from leukodx.models.artifact import ModelBundle
from leukodx.predict.predictor import Predictor
from leukodx.train.run import train

LITE = ("efficientnet_lite0", "efficientnet_lite1")


def test_fusion_network_interface_and_checks():
    m = create_model("xincept_all", 4, backbones=LITE).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape == (2, 256, 3, 3) and torch.allclose(m.forward_head(f), m(x))
        assert m.forward_head(f, pre_logits=True).shape == (2, 256)
    assert {id(p) for p in m.backbone_a.parameters()} & {id(p) for p in m.pretrained_modules()[0].parameters()}
    with pytest.raises(LeukodxError, match="normalisation"):
        create_model("xincept_all", 4, backbones=("efficientnet_lite0", "resnet18"))
    with pytest.raises(LeukodxError, match="two backbones"):
        create_model("xincept_all", 4, backbones=("resnet18",))


def test_xgboost_head_is_a_sklearn_style_estimator():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
    h = XGBoostHead(n_estimators=100).fit(X[:200], y[:200], X[200:], y[200:])
    assert (h.predict(X[200:]) == y[200:]).mean() > 0.85
    back = XGBoostHead.from_json(h.to_json())
    assert np.allclose(back.predict_proba(X), h.predict_proba(X))


def test_two_stage_training_gives_one_tree_headed_artefact(tmp_path, bad_files):
    generate(tmp_path / "d", n_per_class=30, size=64, seed=2, per_slide=5)
    cfg = TrainConfig(data=str(tmp_path / "d" / "manifest.csv"), model="xincept_all", model_kwargs={"backbones": list(LITE)},
                      pretrained=True, head="xgboost", image_size=64, epochs=2, freeze_epochs=1, augment="randaugment",
                      use_hashes=False, bootstrap=50, early_stopping_patience=0)
    s = train(cfg, tmp_path / "run", progress=False)
    assert s["xgboost"]["n_test"] > 0 and (tmp_path / "run" / "xgboost" / "test" / "metrics.json").is_file()
    b = ModelBundle.load(tmp_path / "run" / "xgboost")
    assert b.tree_head is not None and b.info["head"] == "xgboost"
    folder, _ = bad_files
    pred = Predictor(b)
    preds, errors = pred.predict_paths(sorted(folder.iterdir()))
    assert len(preds) == 7 and errors
    x = pred.pre.normalize(torch.stack([pred.pre(load_image(p.path)) for p in preds]))
    with torch.no_grad():
        feats = b.model.forward_head(b.model.forward_features(x), pre_logits=True).numpy()
    assert [p.label for p in preds] == [b.classes[k] for k in b.head().predict(feats)]  # the trees decide
    with pytest.raises(LeukodxError, match="XGBoost head"):
        Predictor(b, backend="onnx")
    img = preds[0].path
    combined = Explainer(b).explain(img, ["gradcam"])[0]
    assert combined.label == preds[0].label  # explains the class the trees predict
    for layer in ("proj_a", "proj_b"):  # each backbone's own Grad-CAM
        assert Explainer(b, layer=layer).explain(img, ["gradcam"])[0].map.shape == (64, 64)
