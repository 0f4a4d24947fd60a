"""Explanations: every model kind, methods that must find a known cue, faithfulness, audit, CLI."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from leukodx.cli import main
from leukodx.explain import Explainer, ExplainError
from leukodx.explain import methods as M
from leukodx.explain.audit import attribution_shares, summarise
from leukodx.explain.faithfulness import deletion_insertion, randomised_copy, rank_similarity
from leukodx.models import create_model
from leukodx.models.artifact import ModelBundle


def bundle_for(model, size=64, classes=("a", "b", "c")):
    return ModelBundle(model.eval(), "x", list(classes), {"image_size": size, "mean": [0.5] * 3, "std": [0.5] * 3})


class TopLeftModel(nn.Module):
    """Class 1's logit is the brightness of the top-left quadrant; nothing else matters.
    Has the registry interface, with a 4x4 'feature map' of per-cell means."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))  # unsaturated probabilities

    def forward_features(self, x):
        return nn.functional.avg_pool2d(x, x.shape[-1] // 4)

    def forward_head(self, f, pre_logits=False):
        tl = f[:, :, :2, :2].mean((1, 2, 3))
        return torch.stack([-self.scale * tl, self.scale * tl], 1)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_methods_find_the_only_cue():
    b = ModelBundle(TopLeftModel(), "x", ["a", "b"], {"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3})
    a = np.random.default_rng(0).integers(60, 120, (64, 64, 3), dtype=np.uint8)
    a[:32, :32] += 130  # a bright top-left quadrant: the evidence for class 1
    img = Image.fromarray(a)
    # (plain Grad-CAM averages gradients per channel, so it cannot localise this cue; LayerCAM can)
    for e in Explainer(b).explain(img, ["layercam", "ig", "lime", "shap"], target=1):
        tl = e.map[:32, :32].sum() / e.map.sum()
        assert tl > 0.7, (e.method, tl)  # quarter of the area; CAM upsampling and sampling noise blur it
        x = Explainer(b).prepare(img)[1]
        good = deletion_insertion(b.probabilities, x, e.map, 1)
        bad = deletion_insertion(b.probabilities, x, 1 - e.map, 1)
        assert good["deletion_auc"] < bad["deletion_auc"] and good["insertion_auc"] > bad["insertion_auc"]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "ddrnet", "thesis_cnn", "classic_cnn", "hybrid_cnn_vit",
                                  "thesis_vit", "vit_tiny_patch16_224", "resnet18"])
def test_cam_works_for_every_model_kind(name):
    torch.manual_seed(0)
    kw = {"img_size": 64} if name not in ("efficientnet_lite0", "resnet18") else {}
    b = bundle_for(create_model(name, 3, pretrained=False, **kw))
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 80, 3), dtype=np.uint8)).convert("L")
    methods = ["gradcam", "eigencam", "layercam"] + (["rollout"] if "vit" in name and "hybrid" not in name else [])
    for e in Explainer(b).explain(img, methods):
        assert e.map.shape == (64, 64) and np.isfinite(e.map).all() and 0 <= e.map.min() <= e.map.max() <= 1


def test_layercam_reads_the_stage_twice_as_fine_as_the_last():
    from leukodx.explain.targets import finer_stage

    torch.manual_seed(0)
    m = create_model("resnet18", 3, pretrained=False)
    assert finer_stage(m, 64) == "layer3"  # 4 x 4 at 64 px, where forward_features gives 2 x 2
    assert finer_stage(create_model("thesis_vit", 3, img_size=64), 64) is None  # tokens: the default target
    b = bundle_for(m)
    img = Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    ex = Explainer(b)
    e = ex.explain(img, ["layercam"])[0]
    _, x = ex.prepare(img)
    np.testing.assert_allclose(e.map, M.cam(b.model, x, e.target, "layercam", "layer3"), atol=1e-6)
    last = M.cam(b.model, x, e.target, "layercam", None)
    assert not np.allclose(e.map, last)
    assert np.allclose(Explainer(b, layer="layer4").explain(img, ["layercam"])[0].map,
                       M.cam(b.model, x, e.target, "layercam", "layer4"), atol=1e-6)  # a named layer wins


def test_clear_errors_for_impossible_explanations():
    cnn = bundle_for(create_model("resnet18", 3))
    img = Image.new("RGB", (64, 64), "white")
    with pytest.raises(ExplainError, match="attention"):
        Explainer(cnn).explain(img, ["rollout"])
    with pytest.raises(ExplainError, match="unknown explanation"):
        Explainer(cnn).explain(img, ["magic"])
    with pytest.raises(ExplainError, match="no layer named"):
        Explainer(cnn, layer="nope").explain(img, ["gradcam"])
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 3))
    with pytest.raises(ExplainError, match="no conv layer"):
        Explainer(bundle_for(mlp)).explain(img, ["gradcam"])
    assert Explainer(bundle_for(mlp)).explain(img, ["ig"])[0].map.shape == (64, 64)  # gradients still work


def test_randomisation_changes_gradcam_and_audit_shares():
    torch.manual_seed(0)
    m = create_model("resnet18", 3).eval()
    x = torch.randn(1, 3, 128, 128)
    a = M.cam(m, x, 0, "eigencam")
    r = randomised_copy(m, 1.0)
    assert any(not torch.equal(p, q) for p, q in zip(m.parameters(), r.parameters()))
    assert rank_similarity(a, a) == pytest.approx(1.0) and rank_similarity(a, M.cam(r, x, 0, "eigencam")) < 0.99
    img = np.full((64, 64, 3), 230, np.uint8)
    img[20:40, 20:40] = (90, 40, 120)  # a dark "cell"
    heat = np.zeros((64, 64))
    heat[-5:, -10:] = 1  # all attribution on the scale-bar corner
    s = attribution_shares(img, heat)
    assert s["corner_share"] == 1.0 and s["cell_share"] == 0.0 and 0.05 < s["cell_area"] < 0.2
    assert s["stained_share"] == 0.0 and s["stained_area"] == pytest.approx(s["cell_area"], abs=0.03)  # the purple square
    assert summarise([{"label": "x", **s}])["all"]["n"] == 1


def test_cli_explain_folder_with_bad_files(bad_files, tmp_path):
    folder, _bad = bad_files
    b = bundle_for(create_model("ddrnet", 3, img_size=64))
    b.arch, b.model_kwargs = "ddrnet", {"img_size": 64}
    b.save(tmp_path / "m.pt")
    out = tmp_path / "ex"
    assert main(["explain", str(folder), "--model", str(tmp_path / "m.pt"), "--methods", "gradcam,layercam",
                 "--out", str(out), "--feature-maps"]) == 0
    rows = json.loads((out / "explanations.json").read_text())
    assert len(rows) == 7 and all((out / p.split("/")[-1]).is_file() for r in rows for p in r["files"].values())
    assert np.load(next(out.glob("*_gradcam.npy"))).shape == (64, 64)


def test_feature_maps_per_ddrnet_stage():
    from leukodx.explain.feature_maps import feature_maps, feature_sheet

    m = create_model("ddrnet", 3, img_size=64)
    maps = feature_maps(m, torch.randn(1, 3, 64, 64))
    assert list(maps) == ["stem", "drdb", "csab", "project", "norm"] and maps["stem"].shape == (64, 16, 16)
    assert feature_sheet(maps).size == (110 + 8 * 64, 5 * 64)
    titled = np.asarray(feature_sheet(maps, title="read in grayscale: colours unfamiliar"))
    assert titled.shape[:2] == (20 + 5 * 64, 110 + 8 * 64) and (titled[:20] < 128).any()  # the title is drawn
    assert (np.asarray(feature_sheet(maps))[:, 110:] == titled[20:, 110:]).all()  # the maps move down, unchanged
    with pytest.raises(ExplainError, match="no layer"):
        feature_maps(m, torch.randn(1, 3, 64, 64), ["nope"])


def test_audit_section_warns_only_when_no_cell_region_draws_attribution():
    from leukodx.evaluate.model_card import audit_section

    def audit(cell, stained):  # shares on areas of 0.1 (cell) and 0.2 (stained cells)
        return {"all": {"n": 10, "cell_share": cell, "cell_area": 0.1, "stained_share": stained, "stained_area": 0.2,
                        "background_share": 1 - max(cell, stained), "background_area": 0.75,
                        "corner_share": 0.01, "corner_area": 0.045}}
    text = "\n".join(audit_section({"Grad-CAM": audit(0.12, 0.22)}, "x.json"))
    assert "looks at the background" in text and "1.2x" in text and "1.1x" in text
    text = "\n".join(audit_section({"Grad-CAM": audit(0.12, 0.6)}, "x.json"))  # the blasts of a field draw 3x their share
    assert "looks at the background" not in text and "3.0x" in text
    # the first method leads the table and the verdict; the others get one line each
    text = "\n".join(audit_section({"LayerCAM": audit(0.12, 0.6), "Grad-CAM": audit(0.12, 0.22)}, "x.json"))
    assert "looks at the background" not in text and "LayerCAM over 10 test images" in text
    assert "- Grad-CAM, same images: 78% on the background; the cell gets 1.2x" in text


def test_cell_interventions_paint_out_the_stained_cell_or_everything_else():
    """A purple disc on a pink field: painted out it is gone; the control paints as much elsewhere and
    leaves it alone; `cells only` leaves it alone and flattens the rest."""
    from leukodx.explain.audit import cell_interventions

    yy, xx = np.mgrid[:96, :96]
    img = np.empty((96, 96, 3), np.uint8)
    img[:] = (232, 214, 220)
    img[::2] -= 6  # a textured field, so that painting it shows
    img[(yy - 60) ** 2 + (xx - 30) ** 2 < 8 ** 2] = (200, 150, 160)  # a pink red cell: not stained
    disc = (yy - 30) ** 2 + (xx - 60) ** 2 < 12 ** 2
    img[disc] = (110, 60, 160)
    v = cell_interventions(img)

    def purple(a):
        return (a[..., 0].astype(float) + a[..., 2]) / 2 - a[..., 1]

    out = v["cells painted out"]
    assert purple(img)[disc].min() > 60 and len(np.unique(out[disc].reshape(-1, 3), axis=0)) == 1
    assert purple(out).max() <= purple(img)[~disc].max()  # nothing more purple than the red cell is left
    changed = (v["control: the same blobs elsewhere"] != img).any(-1)
    assert changed.sum() >= 0.4 * disc.sum() and not (changed & disc).any()  # half the field's rows already match
    only = v["cells only"]
    assert (only[disc] == img[disc]).all()
    assert len(np.unique(only[(yy - 30) ** 2 + (xx - 60) ** 2 > 16 ** 2].reshape(-1, 3), axis=0)) == 1


def test_cell_removal_section_says_whether_the_model_needs_the_cells():
    from leukodx.evaluate.model_card import cell_removal_section

    def result(painted_out):
        rows = [{"variant": "as seen", "accuracy": 0.98, "answers": {"a": 50, "b": 50}, "median_top_probability": 0.99,
                 "referred": 0.05},
                {"variant": "cells painted out", "accuracy": painted_out, "answers": {"a": 90, "b": 10},
                 "median_top_probability": 0.95, "referred": 0.5}]
        return {"n": 100, "chance": 0.5, "rows": rows}

    assert "does not need the cells" in "\n".join(cell_removal_section(result(0.9), "x.json"))
    text = "\n".join(cell_removal_section(result(0.5), "x.json"))
    assert "It reads the cells" in text and "called 'a' (90%)" in text
